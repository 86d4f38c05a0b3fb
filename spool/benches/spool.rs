//! Durable appends per second and time-to-Durable for each fsync policy,
//! through the producer (`send`, then `durable()`), with 100-byte records,
//! side by side with a plain `write` + `fdatasync` loop on the same disk in
//! the same run (the physical limit of one record per fsync).
//!
//! Three workloads per policy:
//! * pipelined, max rate: one task sends as fast as `send` returns, another
//!   awaits each record's `durable()` in order; records/s until the last is
//!   Durable (its latencies include the queue the sender builds up);
//! * offered rate (default 200k records/s, `SPOOL_BENCH_RATE`): the same,
//!   with the sender paced in 1 ms batches; the send-to-Durable times of a
//!   spool that keeps up;
//! * sequential: send one record, await `durable()`, repeat — one record
//!   per fsync, directly comparable with the raw loop.
//!
//! `Always` sequential runs in short turns alternated with two raw loops:
//! one that grows its file as it writes (the target's baseline), and one
//! into space reserved first with `fallocate`, as the spool's segments are
//! by default (`SpoolConfig::preallocate`), which spares each fdatasync the
//! file-size update: the stricter comparison.
//!
//! Encryption at rest: for each policy, the pipelined workload also runs
//! with the spool encrypting (AES-256-GCM), in turns alternated with the
//! clear one (`SPOOL_BENCH_CRYPT_TURNS` pairs, default 5), and the ratio
//! of the two rates is printed (target for `Interval`: at least 0.8).
//! `SPOOL_BENCH_ONLY=encryption` runs only that comparison.
//!
//! The transport (the test kit's scripted one, keeping no records)
//! acknowledges at once, so records settle and segments are deleted as in
//! steady operation.
//!
//! ```text
//! cargo bench -p robust-producer-spool --bench spool
//! SPOOL_BENCH_DIR=/some/disk SPOOL_BENCH_RECORDS=300000 SPOOL_BENCH_SECONDS=3 cargo bench ...
//! SPOOL_BENCH_ONLY=always SPOOL_BENCH_TURNS=10 cargo bench ...  # only Always vs raw, alternated
//! SPOOL_BENCH_ONLY=encryption cargo bench ...  # only encrypted vs clear, per policy
//! ```

#![expect(clippy::unwrap_used, reason = "a benchmark stops at the first failure")]
#![expect(clippy::print_stdout, reason = "a benchmark prints its figures")]

use std::fs::OpenOptions;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use robust_producer::{Config, OverflowPolicy, Producer, Record, TokioRuntime};
use robust_producer_mock::ScriptedTransport;
use robust_producer_spool::{DiskSpool, EncryptionKey, FsyncPolicy, SpoolConfig};
use tokio::sync::mpsc::unbounded_channel;

struct Figures {
    rate: f64,
    p50: Duration,
    p99: Duration,
    fsyncs: u64,
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

fn figures(count: usize, elapsed: Duration, mut lat: Vec<Duration>, fsyncs: u64) -> Figures {
    lat.sort_unstable();
    Figures {
        rate: count as f64 / elapsed.as_secs_f64(),
        p50: percentile(&lat, 0.50),
        p99: percentile(&lat, 0.99),
        fsyncs,
    }
}

/// The physical limit: `write` 124 bytes (a framed 100-byte record) and
/// `fdatasync`, in a loop, for `seconds`: (records, seconds, latencies).
/// `reserve`: into a file whose space was reserved first (`fallocate`), as
/// the spool's segments are by default, rather than growing it.
fn raw_turn(dir: &Path, seconds: f64, reserve: bool) -> (usize, f64, Vec<Duration>) {
    let path = dir.join("raw.bin");
    let mut f = OpenOptions::new()
        .create(true)
        .truncate(true)
        .write(true)
        .open(&path)
        .unwrap();
    if reserve {
        rustix::fs::fallocate(&f, rustix::fs::FallocateFlags::empty(), 0, 64 << 20).unwrap();
    }
    let buf = [0x5au8; 124];
    let mut lat = Vec::new();
    let start = Instant::now();
    while start.elapsed().as_secs_f64() < seconds {
        let t = Instant::now();
        f.write_all(&buf).unwrap();
        f.sync_data().unwrap();
        lat.push(t.elapsed());
    }
    let elapsed = start.elapsed().as_secs_f64();
    drop(f);
    let _ = std::fs::remove_file(&path);
    (lat.len(), elapsed, lat)
}

fn raw_loop(dir: &Path, seconds: f64) -> Figures {
    let (n, t, lat) = raw_turn(dir, seconds, false);
    figures(n, Duration::from_secs_f64(t), lat, n as u64)
}

fn producer(spool: &DiskSpool) -> Producer {
    let config = Config::builder()
        .max_queued_records(1 << 20)
        .max_queued_bytes(1 << 30)
        .overflow(OverflowPolicy::Block {
            timeout: Duration::from_secs(60),
        })
        .build()
        .unwrap();
    Producer::builder(config)
        .spool(spool.clone())
        .start(
            ScriptedTransport::new().forget_records(),
            TokioRuntime::new(),
        )
        .expect("the producer config fits the transport")
}

/// A fresh spool in `dir`; `encrypted`: encrypting under a bench key.
fn open(dir: &Path, fsync: FsyncPolicy, encrypted: bool) -> DiskSpool {
    let _ = std::fs::remove_dir_all(dir);
    let mut config = SpoolConfig::builder(dir)
        .segment_bytes(64 << 20)
        .max_bytes(1 << 30)
        .fsync(fsync);
    if encrypted {
        config = config.encryption_key(EncryptionKey::new(1, [0x17; 32]));
    }
    DiskSpool::open(config.build().unwrap()).unwrap()
}

fn record() -> Record {
    Record::new("bench", vec![0x42u8; 100])
}

/// Sends `n` records as fast as `send` returns; a second task awaits each
/// record's `durable()` in order. Records/s until the last is Durable.
async fn pipelined(dir: &Path, fsync: FsyncPolicy, n: usize, encrypted: bool) -> Figures {
    paced(dir, fsync, n, None, encrypted).await
}

/// Sends `n` records at `rate` records/s (in 1 ms batches), or as fast as
/// possible; a second task awaits each record's `durable()` in order and
/// notes the time from its `send` to Durable.
async fn paced(
    dir: &Path,
    fsync: FsyncPolicy,
    n: usize,
    rate: Option<u64>,
    encrypted: bool,
) -> Figures {
    let spool = open(dir, fsync, encrypted);
    let producer = producer(&spool);
    let (tx, mut rx) = unbounded_channel::<(Instant, robust_producer::DeliveryHandle)>();
    let waiter = tokio::spawn(async move {
        let mut lat = Vec::with_capacity(n);
        while let Some((sent, handle)) = rx.recv().await {
            handle.durable().await.unwrap();
            lat.push(sent.elapsed());
        }
        lat
    });
    let per_ms = rate.map(|r| (r / 1000).max(1) as usize);
    let start = Instant::now();
    let mut tick = tokio::time::Instant::now();
    for i in 0..n {
        let handle = producer.send(record()).await.unwrap();
        tx.send((Instant::now(), handle)).unwrap();
        match per_ms {
            Some(batch) if i % batch == batch - 1 => {
                tick += Duration::from_millis(1);
                tokio::time::sleep_until(tick).await;
            }
            None if i % 256 == 255 => tokio::task::yield_now().await,
            _ => {}
        }
    }
    drop(tx);
    let lat = waiter.await.unwrap();
    let elapsed = start.elapsed();
    let fsyncs = spool.stats().fsyncs;
    producer.close(Duration::from_secs(10)).await;
    figures(n, elapsed, lat, fsyncs)
}

/// Send one record, await `durable()`, repeat, for `seconds`.
async fn sequential_turn(
    dir: &Path,
    fsync: FsyncPolicy,
    seconds: f64,
) -> (usize, f64, Vec<Duration>, u64) {
    let spool = open(dir, fsync, false);
    let producer = producer(&spool);
    let mut lat = Vec::new();
    let start = Instant::now();
    while start.elapsed().as_secs_f64() < seconds {
        let t = Instant::now();
        let handle = producer.send(record()).await.unwrap();
        handle.durable().await.unwrap();
        lat.push(t.elapsed());
    }
    let elapsed = start.elapsed().as_secs_f64();
    let fsyncs = spool.stats().fsyncs;
    producer.close(Duration::from_secs(10)).await;
    (lat.len(), elapsed, lat, fsyncs)
}

async fn sequential(dir: &Path, fsync: FsyncPolicy, seconds: f64) -> Figures {
    let (n, t, lat, fsyncs) = sequential_turn(dir, fsync, seconds).await;
    figures(n, Duration::from_secs_f64(t), lat, fsyncs)
}

/// The turns of one alternated workload, summed.
#[derive(Default)]
struct Turns {
    records: usize,
    seconds: f64,
    latencies: Vec<Duration>,
    fsyncs: u64,
}

impl Turns {
    /// Adds a turn; returns its rate.
    fn add(&mut self, records: usize, seconds: f64, latencies: Vec<Duration>, fsyncs: u64) -> f64 {
        self.records += records;
        self.seconds += seconds;
        self.latencies.extend(latencies);
        self.fsyncs += fsyncs;
        records as f64 / seconds
    }

    fn figures(self) -> Figures {
        figures(
            self.records,
            Duration::from_secs_f64(self.seconds),
            self.latencies,
            self.fsyncs,
        )
    }
}

fn line(name: &str, f: &Figures, raw: &Figures) {
    println!(
        "{name:<36} {:>11.0} rec/s {:>6.2}x raw   p50 {:>9.1?}   p99 {:>9.1?}   fsyncs {:>7}",
        f.rate,
        f.rate / raw.rate,
        f.p50,
        f.p99,
        f.fsyncs
    );
}

/// The pipelined workload in clear and encrypted, in `turns` alternated
/// pairs: the figures of each, summed over the turns, and the ratio
/// (encrypted / clear) of each pair.
fn clear_and_encrypted(
    rt: &tokio::runtime::Runtime,
    dir: &Path,
    policy: FsyncPolicy,
    n: usize,
    turns: usize,
) -> (Figures, Figures, Vec<f64>) {
    let mut clear = Turns::default();
    let mut sealed = Turns::default();
    let mut ratios = Vec::new();
    for turn in 0..turns {
        // Which goes first alternates too.
        let order = if turn % 2 == 0 {
            [false, true]
        } else {
            [true, false]
        };
        let mut rates = [0.0; 2];
        for encrypted in order {
            let f = rt.block_on(pipelined(dir, policy, n, encrypted));
            let sum = if encrypted { &mut sealed } else { &mut clear };
            // Latencies are not kept here: the rates are what is compared.
            rates[usize::from(encrypted)] = sum.add(n, n as f64 / f.rate, Vec::new(), f.fsyncs);
        }
        ratios.push(rates[1] / rates[0]);
    }
    ratios.sort_by(f64::total_cmp);
    (clear.figures(), sealed.figures(), ratios)
}

/// Prints the encrypted rate beside the clear one, for each policy.
fn encryption_cost(
    rt: &tokio::runtime::Runtime,
    dir: &Path,
    policies: &[(&str, FsyncPolicy)],
    n: usize,
    raw: &Figures,
) {
    let turns: usize = std::env::var("SPOOL_BENCH_CRYPT_TURNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(5)
        .max(1);
    println!("encryption at rest (AES-256-GCM), pipelined, {turns} alternated turns each:");
    for &(name, policy) in policies {
        let spool_dir = dir.join(format!("{}-crypt", name.replace(['(', ')', ' '], "")));
        let (clear, sealed, ratios) = clear_and_encrypted(rt, &spool_dir, policy, n, turns);
        line(&format!("{name}: clear"), &clear, raw);
        line(&format!("{name}: encrypted"), &sealed, raw);
        println!(
            "{name}: encrypted / clear: {:.2}x overall, {:.2}x median of the pairs {:.2?}",
            sealed.rate / clear.rate,
            ratios[ratios.len() / 2],
            ratios
        );
    }
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return; // `cargo test --benches` lists; nothing to list
    }
    let base: PathBuf = std::env::var_os("SPOOL_BENCH_DIR")
        .map(PathBuf::from)
        .or_else(|| option_env!("CARGO_TARGET_TMPDIR").map(PathBuf::from))
        .unwrap_or_else(std::env::temp_dir);
    let dir = base.join(format!("spool-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let n: usize = std::env::var("SPOOL_BENCH_RECORDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(300_000);
    let seconds: f64 = std::env::var("SPOOL_BENCH_SECONDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3.0);
    println!(
        "spool bench: dir {} ({n} records pipelined, {seconds} s sequential/raw), 100-byte records",
        dir.display()
    );

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let offered: u64 = std::env::var("SPOOL_BENCH_RATE")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200_000);
    let policies = [
        ("Always", FsyncPolicy::Always),
        (
            "Interval(1 ms)",
            FsyncPolicy::Interval(Duration::from_millis(1)),
        ),
        (
            "Interval(10 ms)",
            FsyncPolicy::Interval(Duration::from_millis(10)),
        ),
        ("Never", FsyncPolicy::Never),
    ];
    // Always, one record per fsync, against the raw loop: short turns of
    // each, alternated, so that both see the same disk (its rate drifts on
    // a shared machine).
    let turns: usize = std::env::var("SPOOL_BENCH_TURNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(6);
    let only_always = std::env::var("SPOOL_BENCH_ONLY").is_ok_and(|v| v == "always");
    if std::env::var("SPOOL_BENCH_ONLY").is_ok_and(|v| v == "encryption") {
        let raw = raw_loop(&dir, 1.0);
        encryption_cost(&rt, &dir, &policies, n, &raw);
        let _ = std::fs::remove_dir_all(&dir);
        return;
    }
    let turn = seconds / 2.0;
    let mut raw = Turns::default();
    let mut reserved = Turns::default();
    let mut seq = Turns::default();
    let always_dir = dir.join("Always-sequential");
    for _ in 0..turns {
        let (n, t, lat) = raw_turn(&dir, turn, false);
        let raw_rate = raw.add(n, t, lat, n as u64);
        let (n, t, lat) = raw_turn(&dir, turn, true);
        let reserved_rate = reserved.add(n, t, lat, n as u64);
        let (n, t, lat, fsyncs) =
            rt.block_on(sequential_turn(&always_dir, FsyncPolicy::Always, turn));
        let seq_rate = seq.add(n, t, lat, fsyncs);
        println!(
            "  turn: raw {raw_rate:>6.0} rec/s, raw into reserved space {reserved_rate:>6.0} rec/s, \
             Always sequential {seq_rate:>6.0} rec/s = {:.2}x raw, {:.2}x reserved",
            seq_rate / raw_rate,
            seq_rate / reserved_rate
        );
    }
    let raw = raw.figures();
    let reserved = reserved.figures();
    let always_seq = seq.figures();
    line("raw write+fdatasync loop", &raw, &raw);
    line("raw, into reserved space", &reserved, &raw);
    line("Always: sequential (alternated)", &always_seq, &raw);
    println!(
        "Always: sequential / raw into reserved space: {:.2}x",
        always_seq.rate / reserved.rate
    );
    if only_always {
        let _ = std::fs::remove_dir_all(&dir);
        return;
    }
    for (name, policy) in policies {
        let spool_dir = dir.join(name.replace(['(', ')', ' '], ""));
        if policy != FsyncPolicy::Always {
            let seq = rt.block_on(sequential(&spool_dir, policy, seconds));
            line(&format!("{name}: sequential"), &seq, &raw);
        }
        let pipe = rt.block_on(pipelined(&spool_dir, policy, n, false));
        line(&format!("{name}: pipelined, max rate"), &pipe, &raw);
        let at = rt.block_on(paced(&spool_dir, policy, n, Some(offered), false));
        line(&format!("{name}: offered {}k/s", offered / 1000), &at, &raw);
    }
    encryption_cost(&rt, &dir, &policies, n, &raw);
    // Raw again: the disk's rate drifts; both ends bracket the run.
    let raw2 = raw_loop(&dir, seconds);
    line("raw write+fdatasync loop (again)", &raw2, &raw);
    let _ = std::fs::remove_dir_all(&dir);
}
