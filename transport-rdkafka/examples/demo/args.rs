//! The demo's command line: `--bootstrap`, `--rate`, `--duration`.

use std::time::Duration;

/// What the command line asked for.
pub(crate) struct Args {
    /// A real broker, or `None` for librdkafka's mock cluster.
    pub(crate) bootstrap: Option<String>,
    /// Events per service per second.
    pub(crate) rate: u64,
    /// How long the services publish.
    pub(crate) duration: Duration,
}

fn usage() -> ! {
    eprintln!(
        "usage: demo [--bootstrap host:port] [--rate EVENTS_PER_SERVICE_PER_S] [--duration SECONDS]"
    );
    std::process::exit(2)
}

/// Parses the command line; prints the usage and exits with 2 on anything
/// unknown.
pub(crate) fn args() -> Args {
    let mut a = Args {
        bootstrap: None,
        rate: 5_000,
        duration: Duration::from_secs(8),
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        match flag.as_str() {
            "--bootstrap" => a.bootstrap = Some(it.next().unwrap_or_else(|| usage())),
            "--rate" => {
                a.rate = it
                    .next()
                    .and_then(|v| v.parse().ok())
                    .unwrap_or_else(|| usage())
            }
            "--duration" => {
                let s: f64 = it
                    .next()
                    .and_then(|v| v.parse().ok())
                    .unwrap_or_else(|| usage());
                a.duration = Duration::from_secs_f64(s.max(1.0));
            }
            "-h" | "--help" => usage(),
            _ => usage(),
        }
    }
    a
}
