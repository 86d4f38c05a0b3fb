//! The bench's command line (see the crate doc of `main.rs` for the
//! options).

use robust_producer::Config;

/// What the command line asked for.
#[derive(Clone)]
pub(crate) struct Args {
    pub(crate) records: u64,
    pub(crate) backlog: u64,
    pub(crate) backlog_rounds: usize,
    pub(crate) rounds: usize,
    pub(crate) partitions: i32,
    pub(crate) max_in_flight: usize,
    pub(crate) queue: u64,
    pub(crate) variants: String,
    pub(crate) threads: bool,
    /// Publish metrics to a Prometheus recorder, with librdkafka's
    /// statistics every second, as a monitored service does.
    pub(crate) metrics: bool,
    /// A real broker instead of the mock cluster.
    pub(crate) bootstrap: Option<String>,
    /// Its Docker container, stopped and started for the backlog.
    pub(crate) container: Option<String>,
}

pub(crate) fn args() -> Args {
    let mut a = Args {
        records: 1_000_000,
        backlog: 1_000_000,
        backlog_rounds: 3,
        rounds: 3,
        partitions: 8,
        max_in_flight: Config::builder().build().unwrap().max_in_flight(),
        queue: Config::builder().build().unwrap().max_queued_records() as u64,
        variants: "raw,ours,ours-mt,future".to_owned(),
        threads: false,
        metrics: false,
        bootstrap: None,
        container: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().and_then(|v| v.parse::<u64>().ok());
        match flag.as_str() {
            "--records" => a.records = value().expect("--records N"),
            "--backlog" => a.backlog = value().expect("--backlog N"),
            "--backlog-rounds" => {
                a.backlog_rounds = value().expect("--backlog-rounds N") as usize;
            }
            "--rounds" => a.rounds = value().expect("--rounds N") as usize,
            "--partitions" => a.partitions = value().expect("--partitions N") as i32,
            "--max-in-flight" => a.max_in_flight = value().expect("--max-in-flight N") as usize,
            "--queue" => a.queue = value().expect("--queue N"),
            "--variants" => a.variants = it.next().expect("--variants raw,ours,future"),
            "--threads" => a.threads = true,
            "--metrics" => a.metrics = true,
            "--bootstrap" => a.bootstrap = it.next(),
            "--container" => a.container = it.next(),
            _ => {} // `cargo bench` passes --bench
        }
    }
    a
}
