//! A real Apache Kafka broker in a container, started by testcontainers on
//! a fixed host port (so a restarted broker keeps its address), behind a
//! [`Proxy`] whose address the broker advertises. The broker can be stopped,
//! killed, started again, paused and unpaused.

use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::time::{Duration, Instant};

use rdkafka::ClientConfig;
use rdkafka::producer::{BaseProducer, Producer as _};
use testcontainers::core::{IntoContainerPort, WaitFor};
use testcontainers::runners::AsyncRunner;
use testcontainers::{ContainerAsync, GenericImage, ImageExt};

use crate::prereq;
use crate::proxy::{Mode, Proxy};

/// Image used unless `KAFKA_IMAGE` says otherwise.
pub const DEFAULT_IMAGE: &str = "robust-producer/kafka:4.4.0";

/// What the harness can fail at, with what to do about it.
pub type Error = Box<dyn std::error::Error + Send + Sync>;

/// Host ports reserved for one broker: the proxy's (advertised, dialled by
/// clients) and the container's published port.
#[derive(Debug, Clone, Copy)]
pub struct Ports {
    /// The proxy listens here; the broker advertises it.
    pub proxy: u16,
    /// The container's 9092 is published here.
    pub broker: u16,
}

impl Ports {
    /// Two free loopback ports.
    pub fn reserve() -> std::io::Result<Self> {
        let a = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?;
        let b = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?;
        Ok(Self {
            proxy: a.local_addr()?.port(),
            broker: b.local_addr()?.port(),
        })
    }
}

/// Broker settings a scenario may change.
#[derive(Debug, Clone, Default)]
pub struct BrokerOptions {
    /// Extra `KAFKA_*` environment variables (broker properties).
    pub env: Vec<(String, String)>,
    /// Extra published ports, as (host port, container port).
    pub ports: Vec<(u16, u16)>,
    /// Files written into the container before it starts, as (absolute
    /// path, contents).
    pub files: Vec<(String, Vec<u8>)>,
}

/// A broker container behind a proxy.
pub struct Kafka {
    container: ContainerAsync<GenericImage>,
    proxy: Proxy,
    ports: Ports,
}

impl std::fmt::Debug for Kafka {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Kafka")
            .field("container", &self.container.id())
            .field("proxy", &self.proxy)
            .finish_non_exhaustive()
    }
}

pub(crate) fn image_name() -> (String, String) {
    let name = std::env::var("KAFKA_IMAGE").unwrap_or_else(|_| DEFAULT_IMAGE.to_owned());
    match name.rsplit_once(':') {
        Some((repo, tag)) if !tag.contains('/') => (repo.to_owned(), tag.to_owned()),
        _ => (name, "latest".to_owned()),
    }
}

impl Kafka {
    /// Starts the proxy on reserved ports, without a broker behind it yet:
    /// clients get their connections reset, like a refused port.
    pub async fn proxy_only(ports: Ports) -> Result<Proxy, Error> {
        let listen = SocketAddr::from((Ipv4Addr::LOCALHOST, ports.proxy));
        let upstream = SocketAddr::from((Ipv4Addr::LOCALHOST, ports.broker));
        Ok(Proxy::start(listen, upstream).await?)
    }

    /// Starts a broker now, on fresh ports.
    pub async fn start(options: BrokerOptions) -> Result<Self, Error> {
        let ports = Ports::reserve()?;
        let proxy = Self::proxy_only(ports).await?;
        Self::start_behind(proxy, ports, options).await
    }

    /// Starts the broker behind an already running proxy.
    pub async fn start_behind(
        proxy: Proxy,
        ports: Ports,
        options: BrokerOptions,
    ) -> Result<Self, Error> {
        prereq::require_kafka();
        let (repo, tag) = image_name();
        let mut request = GenericImage::new(repo, tag)
            .with_wait_for(WaitFor::message_on_either_std("Kafka Server started"))
            .with_mapped_port(ports.broker, 9092.tcp())
            .with_env_var(
                "KAFKA_ADVERTISED_LISTENERS",
                format!("PLAINTEXT://127.0.0.1:{}", ports.proxy),
            )
            .with_env_var("KAFKA_HEAP_OPTS", "-Xmx384m -Xms128m")
            .with_startup_timeout(Duration::from_secs(180));
        for (k, v) in options.env {
            request = request.with_env_var(k, v);
        }
        for (host, container) in options.ports {
            request = request.with_mapped_port(host, container.tcp());
        }
        for (path, contents) in options.files {
            request = request.with_copy_to(path, contents);
        }
        let container = request.start().await?;
        let kafka = Self {
            container,
            proxy,
            ports,
        };
        kafka.wait_ready(Duration::from_secs(60)).await?;
        Ok(kafka)
    }

    /// The bootstrap address clients use (the proxy).
    pub fn bootstrap(&self) -> String {
        format!("127.0.0.1:{}", self.ports.proxy)
    }

    /// The proxy in front of the broker.
    pub fn proxy(&self) -> &Proxy {
        &self.proxy
    }

    /// Stops the broker gracefully (SIGTERM, then SIGKILL after 10 s).
    pub async fn stop(&self) -> Result<(), Error> {
        Ok(self.container.stop_with_timeout(Some(10)).await?)
    }

    /// Kills the broker (SIGKILL): a crash.
    pub async fn kill(&self) -> Result<(), Error> {
        Ok(self.container.stop_with_timeout(Some(0)).await?)
    }

    /// Starts a stopped or killed broker on the same ports and waits until
    /// it answers metadata requests.
    pub async fn restart(&self) -> Result<(), Error> {
        self.container.start().await?;
        self.wait_ready(Duration::from_secs(120)).await
    }

    /// Freezes the broker process: connections stay open, nothing answers.
    pub async fn pause(&self) -> Result<(), Error> {
        Ok(self.container.pause().await?)
    }

    /// Thaws a paused broker.
    pub async fn unpause(&self) -> Result<(), Error> {
        Ok(self.container.unpause().await?)
    }

    /// Sets the proxy's mode.
    pub fn set_network(&self, mode: Mode) {
        self.proxy.set_mode(mode);
    }

    /// Waits until a metadata request through the proxy succeeds.
    pub async fn wait_ready(&self, timeout: Duration) -> Result<(), Error> {
        let bootstrap = self.bootstrap();
        tokio::task::spawn_blocking(move || wait_ready(&bootstrap, timeout)).await?
    }
}

/// Polls `bootstrap` with metadata requests until one succeeds.
pub fn wait_ready(bootstrap: &str, timeout: Duration) -> Result<(), Error> {
    let producer: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("log_level", "3")
        .create()?;
    let start = Instant::now();
    loop {
        match producer
            .client()
            .fetch_metadata(None, Duration::from_secs(2))
        {
            Ok(md) if !md.brokers().is_empty() => return Ok(()),
            result => {
                if start.elapsed() > timeout {
                    return Err(format!(
                        "broker at {bootstrap} not ready after {timeout:?}: {result:?}"
                    )
                    .into());
                }
                std::thread::sleep(Duration::from_millis(200));
            }
        }
    }
}
