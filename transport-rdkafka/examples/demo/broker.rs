//! The broker the demo talks to: librdkafka's mock cluster, whose outages
//! the demo scripts, or a real broker given with `--bootstrap`.

use rdkafka::mocking::MockCluster;
use rdkafka::producer::DefaultProducerContext;

use crate::services::SERVICES;

/// Partitions per topic on the mock cluster, which keeps at most 5 MiB per
/// partition: room for about 400 000 events per service.
const PARTITIONS: i32 = 32;
/// Events per service the mock cluster can hold for the read-back.
pub(crate) const MOCK_CAPACITY: u64 = 400_000;

/// The broker the demo talks to, and whether it can cut it.
pub(crate) enum Broker {
    /// librdkafka's in-process mock cluster, with one topic per service.
    Mock(MockCluster<'static, DefaultProducerContext>),
    /// A real broker's bootstrap servers.
    Real(String),
}

impl Broker {
    /// The real broker at `bootstrap`, or a mock cluster with the services'
    /// topics (exits with 2 if it cannot start).
    pub(crate) fn start(bootstrap: Option<&str>) -> Self {
        match bootstrap {
            Some(b) => Broker::Real(b.to_owned()),
            None => {
                let mock = MockCluster::new(1).unwrap_or_else(|e| {
                    eprintln!("cannot start librdkafka's mock cluster: {e}");
                    std::process::exit(2)
                });
                for s in &SERVICES {
                    mock.create_topic(&format!("{}-events", s.name), PARTITIONS, 1)
                        .unwrap();
                }
                Broker::Mock(mock)
            }
        }
    }

    /// Whether this is the mock cluster.
    pub(crate) fn is_mock(&self) -> bool {
        matches!(self, Broker::Mock(_))
    }

    pub(crate) fn bootstrap(&self) -> String {
        match self {
            Broker::Mock(m) => m.bootstrap_servers(),
            Broker::Real(b) => b.clone(),
        }
    }

    /// Brings the mock cluster's broker up or down; nothing for a real one.
    pub(crate) fn set_up(&self, up: bool) {
        if let Broker::Mock(m) = self {
            if up {
                m.broker_up(-1).unwrap();
            } else {
                m.broker_down(-1).unwrap();
            }
        }
    }
}
