//! Memory held per queued record: the growth of the process's resident
//! memory while `--records` (default 1 000 000) records wait in the queue
//! (the broker is down), divided by their number, against the record's own
//! bytes (payload and key).
//!
//! ```text
//! cargo bench -p robust-producer --features tokio --bench held_memory
//! cargo bench -p robust-producer --features tokio --bench held_memory -- --records 2000000
//! ```
//!
//! Two shapes of record: one built from owned bytes per record (a `Vec`
//! payload and a `String` key, as `serde_json::to_vec` and `format!` give
//! them), and one sharing its payload and key (`Bytes` clones). Delivery
//! handles are dropped at once, as a fire-and-forget service does.

#![expect(
    clippy::unwrap_used,
    clippy::print_stdout,
    reason = "a bench binary: it stops on an unexpected error and prints its figures"
)]

use std::sync::Arc;

use robust_producer::{Bytes, Config, Producer, Record, TokioRuntime};
use robust_producer_mock::MockBroker;

const PAYLOAD: usize = 100;

/// Resident memory of this process, in bytes (Linux; 0 elsewhere).
fn rss() -> usize {
    std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| {
            s.split_whitespace()
                .nth(1)
                .and_then(|p| p.parse::<usize>().ok())
        })
        .map_or(0, |pages| pages * 4096)
}

struct Args {
    records: usize,
    /// Measure one shape in this process (the parent runs one child per
    /// shape, so that memory freed by one cannot be reused by the next).
    shape: Option<String>,
}

fn args() -> Args {
    let mut a = Args {
        records: 1_000_000,
        shape: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        match flag.as_str() {
            "--records" => a.records = it.next().and_then(|v| v.parse().ok()).expect("--records N"),
            "--shape" => a.shape = it.next(),
            _ => {} // `cargo bench` passes --bench
        }
    }
    a
}

async fn held(n: usize, shared: bool) -> (f64, usize) {
    let broker = MockBroker::new();
    broker.refuse_until_healed();
    let config = Config::builder()
        .max_queued_records(n)
        .max_in_flight(1)
        .max_queued_bytes(4 << 30)
        .build()
        .unwrap();
    let producer = Producer::builder(config)
        .start(broker.transport(), TokioRuntime::new())
        .unwrap();
    let topic: Arc<str> = Arc::from("held");
    let payload = Bytes::from(vec![b'x'; PAYLOAD]);
    let keys: Vec<Bytes> = (0..1024)
        .map(|k| Bytes::from(format!("key-{k:04}")))
        .collect();
    let before = rss();
    let mut own = 0;
    for i in 0..n {
        let record = if shared {
            Record::new(Arc::clone(&topic), payload.clone()).with_key(keys[i % 1024].clone())
        } else {
            Record::new(Arc::clone(&topic), vec![b'x'; PAYLOAD])
                .with_key(format!("key-{:04}", i % 1024))
        };
        own = record.payload.len() + record.key.as_ref().map_or(0, Bytes::len);
        drop(producer.try_send(record).unwrap());
    }
    let grown = rss().saturating_sub(before);
    assert_eq!(producer.stats().queued_records, n);
    drop(producer.close(std::time::Duration::ZERO).await);
    (grown as f64 / n as f64, own)
}

fn main() {
    let args = args();
    let n = args.records;
    if let Some(shape) = args.shape {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let (per, own) = rt.block_on(held(n, shape == "shared"));
        println!("{per} {own}");
        return;
    }
    println!("memory held per queued record, {n} records waiting (broker down)");
    println!();
    println!(
        "| records built from | bytes per held record | the record's own bytes | overhead per record |"
    );
    println!("|---|---:|---:|---:|");
    for shape in ["owned", "shared"] {
        let out = std::process::Command::new(std::env::current_exe().unwrap())
            .args(["--records", &n.to_string(), "--shape", shape])
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        let mut fields = text.split_whitespace().map(|f| f.parse::<f64>().unwrap());
        let (per, own) = (fields.next().unwrap(), fields.next().unwrap());
        let (what, own) = if shape == "shared" {
            ("shared payload and key (`Bytes` clones)", 0.0)
        } else {
            ("an owned `Vec` payload and `String` key each", own)
        };
        println!("| {what} | {per:.0} | {own:.0} | {:.0} |", per - own);
    }
}
