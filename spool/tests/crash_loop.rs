//! Crash loop: a child process produces through the spool and is killed
//! with SIGKILL at random points — during recovery, while appending, at a
//! segment roll, while draining a backlog — then restarted, over and over.
//! The "broker" lives in this (parent) process and outlives every child:
//! a tiny server on a unix socket that stores what it receives and acks it,
//! with per-cycle faults (slow acks, refused connections, links cut
//! mid-stream with acks lost). Like Kafka's idempotent producer, it fences
//! a connection once a newer one arrives.
//!
//! The child prints `@D <event>` once a record's `durable()` resolved (so
//! the parent learns only of records that really were Durable). After the
//! last cycle a clean child drains what is left. Then: every record
//! reported Durable was stored by the broker at least once; per key, first
//! appearances at the broker are in send order; every copy carries its
//! event id, and the copies blamed on a cycle (the cycle that stored the
//! copy before) are at most the in-flight window (16) plus one per link
//! the broker cut in it; no recovery ever found corruption (SIGKILL only
//! tears tails).
//!
//! The second test runs the same loop with encryption at rest: three
//! cycles in four encrypt new segments under the test key, the others
//! write in clear with the key kept for reading (encryption turned on and
//! off across crashes), and the same checks hold.
//!
//! `CRASH_CYCLES` (default 120, each test) sets the number of cycles, `CRASH_SEED` the
//! seed (printed, to replay a failure), `CRASH_VERBOSE` prints each cycle
//! and each duplicate, `CRASH_STDERR_DIR` keeps the children's stderr.
//!
//! The child is this same test binary, run with `--exact crash_child` and
//! the `CRASH_CHILD` variable set; without it, `crash_child` does nothing.

#![expect(
    clippy::unwrap_used,
    reason = "a test fails loudly on an unexpected error"
)]

use std::collections::{BTreeMap, HashMap, HashSet};
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use robust_producer::{
    Ack, BackoffConfig, Config, OverflowPolicy, Producer, Record, RecordId, TokioRuntime,
    Transport, TransportError, TransportEvent,
};
use robust_producer_spool::{DiskSpool, EncryptionKey, FsyncPolicy, SpoolConfig};

const KEYS: usize = 8;
const MAX_IN_FLIGHT: usize = 16;
const CHILD_ENV: &str = "CRASH_CHILD";

// ----- a tiny seeded RNG -------------------------------------------------

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        // splitmix64
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

// ----- wire format between the child's transport and the broker ----------
// child -> broker: u32 length of (id + payload), u64 record id, payload
// broker -> child: u64 record id (acknowledgement)

fn read_exact_or_eof(s: &mut impl Read, buf: &mut [u8]) -> bool {
    s.read_exact(buf).is_ok()
}

// ----- the broker (parent) ----------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fault {
    /// Ack at once.
    None,
    /// Ack each record after 1 ms: a backlog builds.
    Slow,
    /// Accept connections and close them at once: an outage.
    Refuse,
    /// Cut each connection after a few records, storing the last ones
    /// without acking them (lost acks).
    Cut,
}

struct BrokerState {
    /// The connection allowed to store (the newest).
    current: u64,
    /// Payloads stored, in order.
    log: Vec<String>,
    /// The cycle whose child sent each payload in `log` (its connection's
    /// first frame says; a killed child's connection may be accepted after
    /// the next child started).
    cycle_of: Vec<u64>,
    /// Connections accepted so far (ids are 1, 2, ...).
    conns: u64,
    fault: Fault,
    /// Connections cut so far (Cut fault).
    cuts: usize,
}

struct Broker {
    state: Arc<Mutex<BrokerState>>,
    stop: Arc<AtomicBool>,
}

impl Broker {
    fn start(path: &Path) -> Self {
        let listener = UnixListener::bind(path).unwrap();
        listener.set_nonblocking(true).unwrap();
        let state = Arc::new(Mutex::new(BrokerState {
            current: 0,
            log: Vec::new(),
            cycle_of: Vec::new(),
            conns: 0,
            fault: Fault::None,
            cuts: 0,
        }));
        let stop = Arc::new(AtomicBool::new(false));
        let seed = Arc::new(AtomicU64::new(1));
        let (st, sp, sd) = (state.clone(), stop.clone(), seed);
        std::thread::spawn(move || {
            while !sp.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((stream, _)) => {
                        stream.set_nonblocking(false).unwrap();
                        let (conn, fault) = {
                            let mut s = st.lock().unwrap();
                            s.conns += 1;
                            s.current = s.conns;
                            (s.conns, s.fault)
                        };
                        if fault == Fault::Refuse {
                            drop(stream);
                            continue;
                        }
                        let st = st.clone();
                        let cut_after = Rng(sd.fetch_add(1, Ordering::Relaxed)).below(200) + 5;
                        std::thread::spawn(move || serve(stream, conn, st, cut_after));
                    }
                    Err(_) => std::thread::sleep(Duration::from_micros(500)),
                }
            }
        });
        Self { state, stop }
    }

    fn set_fault(&self, fault: Fault) {
        self.state.lock().unwrap().fault = fault;
    }

    fn cycle_of(&self) -> Vec<u64> {
        self.state.lock().unwrap().cycle_of.clone()
    }

    fn cuts(&self) -> usize {
        self.state.lock().unwrap().cuts
    }

    fn log(&self) -> Vec<String> {
        self.state.lock().unwrap().log.clone()
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

fn serve(mut stream: UnixStream, conn: u64, state: Arc<Mutex<BrokerState>>, cut_after: u64) {
    let mut writer = stream.try_clone().unwrap();
    let mut hello = [0u8; 8];
    if !read_exact_or_eof(&mut stream, &mut hello) {
        return;
    }
    let cycle = u64::from_le_bytes(hello);
    let mut n = 0u64;
    loop {
        let mut len = [0u8; 4];
        if !read_exact_or_eof(&mut stream, &mut len) {
            return;
        }
        let len = u32::from_le_bytes(len) as usize;
        let mut frame = vec![0u8; len];
        if !read_exact_or_eof(&mut stream, &mut frame) || len < 8 {
            return;
        }
        let id = &frame[..8];
        let payload = String::from_utf8_lossy(&frame[8..]).into_owned();
        let fault = {
            let mut s = state.lock().unwrap();
            if s.current != conn {
                return; // fenced: a newer session exists
            }
            s.log.push(payload);
            s.cycle_of.push(cycle);
            s.fault
        };
        n += 1;
        match fault {
            Fault::Cut if n >= cut_after => {
                // Stored, never acked: the ack is lost with the link.
                state.lock().unwrap().cuts += 1;
                let _ = stream.shutdown(std::net::Shutdown::Both);
                return;
            }
            Fault::Slow => std::thread::sleep(Duration::from_millis(1)),
            _ => {}
        }
        if writer.write_all(id).is_err() {
            return;
        }
    }
}

// ----- the child's transport --------------------------------------------

type Tagged = (u64, TransportEvent);

struct SockTransport {
    path: PathBuf,
    /// The child's cycle, sent first on every connection.
    cycle: u64,
    session: u64,
    conn: Arc<Mutex<Option<(u64, UnixStream)>>>,
    tx: tokio::sync::mpsc::UnboundedSender<Tagged>,
    rx: tokio::sync::mpsc::UnboundedReceiver<Tagged>,
}

impl SockTransport {
    fn new(path: PathBuf, cycle: u64) -> Self {
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        Self {
            path,
            cycle,
            session: 0,
            conn: Arc::new(Mutex::new(None)),
            tx,
            rx,
        }
    }

    fn fresh(&mut self, tagged: Tagged) -> Option<TransportEvent> {
        (tagged.0 == self.session).then_some(tagged.1)
    }
}

#[async_trait]
impl Transport for SockTransport {
    fn connect(&mut self) {
        self.session += 1;
        let session = self.session;
        if let Some((_, old)) = self.conn.lock().unwrap().take() {
            let _ = old.shutdown(std::net::Shutdown::Both);
        }
        let (path, conn, tx) = (self.path.clone(), self.conn.clone(), self.tx.clone());
        let hello = self.cycle.to_le_bytes();
        let connected = move || {
            let mut stream = UnixStream::connect(&path)?;
            stream.write_all(&hello)?;
            Ok::<_, std::io::Error>(stream)
        };
        std::thread::spawn(move || match connected() {
            Err(e) => {
                let _ = tx.send((session, TransportEvent::ConnectFailed(e.to_string())));
            }
            Ok(stream) => {
                let mut reader = stream.try_clone().unwrap();
                *conn.lock().unwrap() = Some((session, stream));
                let _ = tx.send((session, TransportEvent::Connected));
                let mut id = [0u8; 8];
                while read_exact_or_eof(&mut reader, &mut id) {
                    let ack = Ack::new(RecordId(u64::from_le_bytes(id)));
                    let _ = tx.send((session, TransportEvent::Delivered(ack)));
                }
                let _ = tx.send((
                    session,
                    TransportEvent::LinkLost("connection closed".into()),
                ));
            }
        });
    }

    fn send(&mut self, id: RecordId, record: &Record) -> Result<(), TransportError> {
        let mut conn = self.conn.lock().unwrap();
        let Some((session, stream)) = conn.as_mut() else {
            return Err(TransportError::link("not connected"));
        };
        if *session != self.session {
            return Err(TransportError::link("stale connection"));
        }
        let mut frame = Vec::with_capacity(12 + record.payload.len());
        frame.extend_from_slice(&((8 + record.payload.len()) as u32).to_le_bytes());
        frame.extend_from_slice(&id.0.to_le_bytes());
        frame.extend_from_slice(&record.payload);
        // A failed write does not end the session here: as with a Kafka
        // client, the link loss comes through the event stream (the
        // reader's `LinkLost`), after every ack the broker sent before it.
        // Reported here, it could overtake those acks, and their records
        // would be sent again.
        if stream.write_all(&frame).is_err() {
            let _ = stream.shutdown(std::net::Shutdown::Both);
        }
        Ok(())
    }

    fn try_next_event(&mut self) -> Option<TransportEvent> {
        while let Ok(t) = self.rx.try_recv() {
            if let Some(e) = self.fresh(t) {
                return Some(e);
            }
        }
        None
    }

    async fn next_event(&mut self) -> TransportEvent {
        loop {
            let Some(t) = self.rx.recv().await else {
                return std::future::pending().await;
            };
            if let Some(e) = self.fresh(t) {
                return e;
            }
        }
    }

    async fn close(&mut self, _timeout: Duration) {
        if let Some((_, s)) = self.conn.lock().unwrap().take() {
            let _ = s.shutdown(std::net::Shutdown::Both);
        }
    }
}

// ----- the child ----------------------------------------------------------

/// `crypt`: "sealed" encrypts new segments under the test key, "readonly"
/// keeps the key for reading only, anything else supplies no key.
fn spool_config(dir: &Path, policy: &str, crypt: &str) -> SpoolConfig {
    let fsync = match policy {
        "always" => FsyncPolicy::Always,
        "interval" => FsyncPolicy::Interval(Duration::from_millis(2)),
        _ => FsyncPolicy::Never,
    };
    let key = EncryptionKey::new(11, [0x6B; 32]);
    let builder = SpoolConfig::builder(dir)
        .segment_bytes(64 << 10)
        .max_bytes(64 << 20)
        .fsync(fsync);
    match crypt {
        "sealed" => builder.encryption_key(key),
        "readonly" => builder.decryption_key(key),
        _ => builder,
    }
    .build()
    .unwrap()
}

/// Runs in the child process only.
#[test]
fn crash_child() {
    let Ok(args) = std::env::var(CHILD_ENV) else {
        return; // not a child: nothing to do
    };
    let a: Vec<&str> = args.split('|').collect();
    let (dir, sock, cycle, policy, mode, records, crypt) = (
        PathBuf::from(a[0]),
        PathBuf::from(a[1]),
        a[2].parse::<u64>().unwrap(),
        a[3],
        a[4],
        a[5].parse::<u64>().unwrap(),
        a[6],
    );
    // Lines start with '@': libtest may print "test crash_child ... " before
    // the first one.
    let out = |line: &str| {
        let mut o = std::io::stdout().lock();
        let _ = writeln!(o, "@{line}");
        let _ = o.flush();
    };
    out("R"); // recovery starts
    let spool = match DiskSpool::open(spool_config(&dir, policy, crypt)) {
        Ok(s) => s,
        Err(e) => {
            out(&format!("E {e}"));
            std::process::exit(3);
        }
    };
    let r = spool.recovery();
    out(&format!(
        "O replayed={} settled={} segments={} deleted={} torn={} quarantined={}",
        r.replayed,
        r.settled,
        r.segments_read,
        r.segments_deleted,
        r.torn_tails.len(),
        r.quarantined.len()
    ));
    for q in &r.quarantined {
        out(&format!("Q {q}"));
    }
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async move {
        let config = Config::builder()
            .max_in_flight(MAX_IN_FLIGHT)
            .max_queued_records(1 << 20)
            .max_queued_bytes(1 << 30)
            .overflow(OverflowPolicy::Block {
                timeout: Duration::from_secs(30),
            })
            .ack_timeout(Duration::from_secs(2))
            .backoff(BackoffConfig {
                initial: Duration::from_millis(2),
                multiplier: 2.0,
                max: Duration::from_millis(50),
                jitter: 0.5,
            })
            .build()
            .unwrap();
        let producer = Producer::builder(config)
            .spool(spool.clone())
            .start(SockTransport::new(sock, cycle), TokioRuntime::new())
.expect("the producer config fits the transport");
        if mode == "drain" {
            producer.flush(Duration::from_secs(60)).await.unwrap();
            assert!(producer.close(Duration::from_secs(5)).await.is_empty());
            out("DONE");
            return;
        }
        // Durable reports, in id order (durability is monotone in id).
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<(String, _)>();
        let reporter = tokio::spawn(async move {
            while let Some((event, handle)) = rx.recv().await {
                let handle: robust_producer::DeliveryHandle = handle;
                if handle.durable().await.is_ok() {
                    let mut o = std::io::stdout().lock();
                    let _ = writeln!(o, "@D {event}");
                    let _ = o.flush();
                }
            }
        });
        let mut rng = Rng(cycle * 7919 + 1);
        let mut segments = spool.stats().segments;
        for i in 0..records {
            let key = i % KEYS as u64;
            let event = format!("{cycle}.{i}");
            let pad = "x".repeat(rng.below(200) as usize);
            let payload = format!("{event} k{key} {pad}");
            let record = Record::new("t", payload.into_bytes())
                .with_key(format!("k{key}").into_bytes())
                .with_header("event_id", event.clone().into_bytes());
            let handle = producer.send(record).await.unwrap();
            tx.send((event, handle)).unwrap();
            if i % 32 == 31 {
                tokio::time::sleep(Duration::from_micros(300)).await;
                if std::env::var_os("CRASH_VERBOSE").is_some() {
                    let st = producer.stats();
                    let sp = spool.stats();
                    out(&format!(
                        "A delivered={} held={} links={} reconnects={} last_error={:?} durable={} appended={} written={} fsyncs={} segs={}",
                        st.delivered,
                        st.queued_records,
                        st.link_losses,
                        st.reconnect_attempts,
                        st.last_error,
                        sp.durable_through.0,
                        sp.appended,
                        sp.bytes_written,
                        sp.fsyncs,
                        sp.segments
                    ));
                }
            }
            let now = spool.stats().segments;
            if now != segments {
                segments = now;
                out("G"); // a segment roll (or deletion) just happened
            }
        }
        drop(tx);
        reporter.await.unwrap();
        out("S");
        producer.close(Duration::from_secs(2)).await;
        out("C");
    });
}

// ----- the parent ---------------------------------------------------------

fn spawn_child(
    dir: &Path,
    sock: &Path,
    cycle: u64,
    (policy, crypt): (&str, &str),
    mode: &str,
    records: u64,
) -> Child {
    Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "crash_child", "--nocapture", "--test-threads=1"])
        .env(
            CHILD_ENV,
            format!(
                "{}|{}|{cycle}|{policy}|{mode}|{records}|{crypt}",
                dir.display(),
                sock.display()
            ),
        )
        .stdout(Stdio::piped())
        .stderr(match std::env::var_os("CRASH_STDERR_DIR") {
            Some(d) => Stdio::from(
                std::fs::File::create(Path::new(&d).join(format!("child-{cycle}.err"))).unwrap(),
            ),
            None => Stdio::null(),
        })
        .spawn()
        .unwrap()
}

/// Reads the child's stdout lines into a channel.
fn lines(child: &mut Child) -> mpsc::Receiver<String> {
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { return };
            let Some(at) = line.find('@') else { continue };
            if tx.send(line[at + 1..].to_owned()).is_err() {
                return;
            }
        }
    });
    rx
}

#[derive(Debug, Clone, Copy)]
enum Kill {
    /// As soon as the child says recovery started.
    DuringRecovery,
    /// After this many Durable reports.
    AfterDurable(usize),
    /// At the first segment roll.
    AtRoll,
    /// After this long from the child's start.
    After(Duration),
}

struct Outcome {
    fault: Fault,
    cuts: usize,
    durable: Vec<String>,
    quarantined: Vec<String>,
    killed: bool,
}

#[test]
fn crash_loop_sigkill_never_loses_a_durable_record() {
    crash_loop(false);
}

#[test]
fn crash_loop_with_encryption_at_rest_never_loses_a_durable_record() {
    crash_loop(true);
}

/// The crash loop; `encrypted`: with encryption at rest (see the module
/// docs).
#[expect(
    clippy::print_stdout,
    reason = "the loop prints its seed and figures, as the tests calling it would"
)]
fn crash_loop(encrypted: bool) {
    let cycles: u64 = std::env::var("CRASH_CYCLES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(120);
    let seed: u64 = std::env::var("CRASH_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
        });
    println!("crash loop: {cycles} cycles, CRASH_SEED={seed}, encrypted: {encrypted}");
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("spool");
    let sock = tmp.path().join("broker.sock");
    let broker = Broker::start(&sock);
    let mut rng = Rng(seed);
    let started = Instant::now();

    let mut outcomes = Vec::new();
    let mut kinds: BTreeMap<&str, usize> = BTreeMap::new();
    for cycle in 1..=cycles {
        let policy = ["always", "interval", "never"][rng.below(3) as usize];
        let fault = match rng.below(10) {
            0 => Fault::Refuse,
            1 | 2 => Fault::Slow,
            3 | 4 => Fault::Cut,
            _ => Fault::None,
        };
        broker.set_fault(fault);
        let kill = match rng.below(10) {
            0 | 1 => Kill::DuringRecovery,
            2 | 3 => Kill::AtRoll,
            4..=6 => Kill::AfterDurable(rng.below(800) as usize),
            _ => Kill::After(Duration::from_millis(rng.below(250))),
        };
        *kinds
            .entry(match kill {
                Kill::DuringRecovery => "during recovery",
                Kill::AtRoll => "at a segment roll",
                Kill::AfterDurable(_) => "while appending",
                Kill::After(_) => "at a random time",
            })
            .or_default() += 1;
        let cuts_at_start = broker.cuts();
        let crypt = match (encrypted, encrypted && rng.below(4) == 0) {
            (false, _) => "plain",
            (true, true) => "readonly",
            (true, false) => "sealed",
        };
        let mut child = spawn_child(&dir, &sock, cycle, (policy, crypt), "produce", 3000);
        let rx = lines(&mut child);
        let t0 = Instant::now();
        let mut durable = Vec::new();
        let mut quarantined = Vec::new();
        let mut killed = false;
        let mut opened = String::new();
        let mut last_a = String::new();
        loop {
            let line = rx.recv_timeout(Duration::from_millis(1));
            let fire = match (&line, kill) {
                (Ok(l), Kill::DuringRecovery) => l == "R",
                (Ok(l), Kill::AtRoll) => l == "G",
                (_, Kill::AfterDurable(n)) => durable.len() >= n,
                (_, Kill::After(d)) => t0.elapsed() >= d,
                _ => false,
            };
            match line {
                Ok(l) => {
                    if let Some(e) = l.strip_prefix("D ") {
                        durable.push(e.to_owned());
                    } else if let Some(q) = l.strip_prefix("Q ") {
                        quarantined.push(q.to_owned());
                    } else if l.starts_with("O ") {
                        opened = l.clone();
                    } else if l.starts_with("A ") {
                        last_a = l.clone();
                    } else if let Some(e) = l.strip_prefix("E ") {
                        panic!("cycle {cycle}: the child could not open the spool: {e}");
                    }
                }
                Err(mpsc::RecvTimeoutError::Disconnected) => break, // exited
                Err(mpsc::RecvTimeoutError::Timeout) => {}
            }
            if fire && !killed {
                child.kill().unwrap(); // SIGKILL
                killed = true;
            }
            assert!(
                t0.elapsed() < Duration::from_secs(60),
                "cycle {cycle} hangs"
            );
        }
        let status = child.wait().unwrap();
        // Drain what the pipe still held (reports written before the kill).
        while let Ok(l) = rx.try_recv() {
            if let Some(e) = l.strip_prefix("D ") {
                durable.push(e.to_owned());
            }
        }
        assert!(
            killed || status.success(),
            "cycle {cycle}: child failed: {status}"
        );
        if std::env::var_os("CRASH_VERBOSE").is_some() {
            println!(
                "cycle {cycle}: {policy} {fault:?} {kill:?} killed={killed} durable={} first={:?} last={:?} opened: {opened} last: {last_a}",
                durable.len(),
                durable.first(),
                durable.last()
            );
        }
        outcomes.push(Outcome {
            fault,
            cuts: broker.cuts() - cuts_at_start,
            durable,
            quarantined,
            killed,
        });
    }

    // Drain: a clean child delivers whatever is left.
    broker.set_fault(Fault::None);
    let crypt = if encrypted { "sealed" } else { "plain" };
    let mut child = spawn_child(&dir, &sock, cycles + 1, ("always", crypt), "drain", 0);
    let rx = lines(&mut child);
    let mut done = false;
    let t0 = Instant::now();
    while t0.elapsed() < Duration::from_secs(90) {
        match rx.recv_timeout(Duration::from_millis(50)) {
            Ok(l) if l == "DONE" => done = true,
            Ok(l) if l.starts_with("Q ") => panic!("drain found corruption: {l}"),
            Ok(_) | Err(mpsc::RecvTimeoutError::Timeout) => {}
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
        }
    }
    assert!(
        child.wait().unwrap().success() && done,
        "the drain did not finish"
    );

    // ----- checks ---------------------------------------------------------
    let log = broker.log();
    let event_of = |p: &str| p.split(' ').next().unwrap_or_default().to_owned();
    let key_of = |p: &str| p.split(' ').nth(1).unwrap_or_default().to_owned();
    let order_of = |e: &str| {
        let (c, i) = e.split_once('.').unwrap();
        (c.parse::<u64>().unwrap(), i.parse::<u64>().unwrap())
    };
    let stored: HashSet<String> = log.iter().map(|p| event_of(p)).collect();

    // 0. No recovery found corruption: SIGKILL only tears tails.
    for (c, o) in outcomes.iter().enumerate() {
        assert!(
            o.quarantined.is_empty(),
            "cycle {}: recovery found corruption after a SIGKILL: {:?} (seed {seed})",
            c + 1,
            o.quarantined
        );
    }
    // 1. Every record reported Durable was delivered at least once.
    let mut durable_total = 0;
    for o in &outcomes {
        for e in &o.durable {
            durable_total += 1;
            assert!(
                stored.contains(e),
                "Durable record {e} never reached the broker (seed {seed})"
            );
        }
    }

    // 2. Per key, first appearances are in send order.
    let mut last: HashMap<String, (u64, u64)> = HashMap::new();
    let mut seen = HashSet::new();
    for p in &log {
        let e = event_of(p);
        if !seen.insert(e.clone()) {
            continue;
        }
        let order = order_of(&e);
        let prev = last.insert(key_of(p), order);
        assert!(
            prev.is_none_or(|prev| prev < order),
            "per-key order broken at {p:?} after {prev:?} (seed {seed})"
        );
    }

    // 3. Duplicates, identifiable by their event id: each copy is blamed on
    // the cycle that stored the copy before it. A cycle's blame is at most
    // the in-flight window (records in flight, or acknowledged but not yet
    // written down as settled, when it crashed or closed: the driver keeps
    // the two together within max_in_flight) plus one per link cut (a
    // record stored whose ack was lost).
    // A copy belongs to the cycle whose child sent it, as its connection's
    // first frame says (not the cycle running when it was stored or its
    // connection accepted: a killed child's last connection and frames may
    // be taken after the next child started).
    let cycle_of = broker.cycle_of();
    let cycle_at = |at: usize| usize::try_from(cycle_of[at]).unwrap(); // 1-based
    let mut previous: HashMap<String, usize> = HashMap::new();
    let mut blame = vec![0usize; outcomes.len() + 2];
    let mut count: HashMap<String, usize> = HashMap::new();
    for (at, p) in log.iter().enumerate() {
        let e = event_of(p);
        *count.entry(e.clone()).or_default() += 1;
        if let Some(prev) = previous.insert(e.clone(), at) {
            let c = cycle_at(prev);
            blame[c] += 1;
            if std::env::var_os("CRASH_VERBOSE").is_some() {
                println!(
                    "dup of {e} stored in cycle {} blamed on cycle {c}",
                    cycle_at(at)
                );
            }
        }
    }
    let duplicates: usize = count.values().map(|n| n - 1).sum();
    let killed = outcomes.iter().filter(|o| o.killed).count();
    println!(
        "crash loop: {cycles} cycles ({killed} killed: {kinds:?}), {} records stored, {} distinct, \
         {durable_total} reported Durable, {duplicates} duplicates (at most {} blamed on one cycle, \
         {} on one without cut links), {:.1} s",
        log.len(),
        stored.len(),
        blame.iter().max().unwrap_or(&0),
        outcomes
            .iter()
            .enumerate()
            .filter(|(_, o)| o.cuts == 0)
            .map(|(i, _)| blame[i + 1])
            .max()
            .unwrap_or(0),
        started.elapsed().as_secs_f64()
    );
    assert!(
        killed >= cycles as usize * 3 / 4,
        "too few cycles were killed: {killed}"
    );
    for (i, o) in outcomes.iter().enumerate() {
        let c = i + 1;
        let bound = MAX_IN_FLIGHT + o.cuts;
        assert!(
            blame[c] <= bound,
            "cycle {c} ({:?}, {} cuts) left {} copies, more than the in-flight window allows ({bound}) (seed {seed})",
            o.fault,
            o.cuts,
            blame[c]
        );
    }
}
