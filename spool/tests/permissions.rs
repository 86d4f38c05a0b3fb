//! The spool's file modes: a new directory is `0700` and every file the
//! spool creates is `0600` — through a producer's records, segment rolls,
//! a recovery that quarantines a corrupt segment's tail, and the deletion
//! of settled segments — under a umask of `0` (which clears nothing) as
//! well as the usual ones; an existing directory and files that group or
//! others can read are reported (log and `RecoveryReport`) and left as
//! they are.
//!
//! The umask belongs to the process, so the tests in this binary take
//! turns holding it.

#![cfg(unix)]
#![expect(clippy::unwrap_used, reason = "a failed unwrap is a failed test")]

mod common;

use std::fs;
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use common::{broker_down, broker_up, producer_config, rec, spool_config};
use robust_producer::{OverflowPolicy, Producer, TokioRuntime};
use robust_producer_mock::ScriptedTransport;
use robust_producer_spool::format::{FRAME_HEADER_LEN, SEGMENT_HEADER_LEN};
use robust_producer_spool::{DiskSpool, FsyncPolicy, SPOOL_DIR_MODE, SPOOL_FILE_MODE};
use rustix::fs::Mode;

/// Whose turn it is to set the process umask.
static UMASK_TURN: Mutex<()> = Mutex::new(());

/// The process umask set to a value until dropped (then restored).
struct Umask {
    previous: Mode,
    _turn: MutexGuard<'static, ()>,
}

impl Umask {
    fn set(mask: u32) -> Self {
        let turn = UMASK_TURN.lock().unwrap_or_else(PoisonError::into_inner);
        let previous = rustix::process::umask(Mode::from_raw_mode(mask));
        Self {
            previous,
            _turn: turn,
        }
    }
}

impl Drop for Umask {
    fn drop(&mut self) {
        rustix::process::umask(self.previous);
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

fn start(spool: &DiskSpool, broker: &ScriptedTransport) -> Producer {
    let config = producer_config()
        .overflow(OverflowPolicy::Reject)
        .build()
        .unwrap();
    Producer::builder(config)
        .spool(spool.clone())
        .start(broker.connection(), TokioRuntime::new())
        .expect("the producer config fits the transport")
}

/// The mode bits of `path`.
fn mode(path: &Path) -> u32 {
    fs::metadata(path).unwrap().permissions().mode() & 0o7777
}

/// Every file in `dir`, by name, with its mode.
fn files(dir: &Path) -> Vec<(String, u32)> {
    let mut files: Vec<(String, u32)> = fs::read_dir(dir)
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            (
                e.file_name().to_string_lossy().into_owned(),
                mode(&e.path()),
            )
        })
        .collect();
    files.sort();
    files
}

/// The segment files in `dir`, oldest first.
fn segments(dir: &Path) -> Vec<PathBuf> {
    files(dir)
        .into_iter()
        .filter(|(name, _)| name.ends_with(".seg"))
        .map(|(name, _)| dir.join(name))
        .collect()
}

/// Asserts `dir` is `0700` and every file in it `0600`, and that the lock,
/// the ledger and a segment are among them.
fn assert_owner_only(dir: &Path, when: &str) {
    assert_eq!(mode(dir), 0o700, "{when}: the directory's mode");
    let files = files(dir);
    for (name, m) in &files {
        assert_eq!(*m, 0o600, "{when}: {name} has mode {m:o}; {files:?}");
    }
    for name in ["lock", "ledger"] {
        assert!(files.iter().any(|(n, _)| n == name), "{when}: {files:?}");
    }
    assert!(!segments(dir).is_empty(), "{when}: {files:?}");
}

/// Sends `n` records of 1 KB to a broker that is down and waits until all
/// are Durable; returns the producer (not closed).
async fn send_durable(spool: &DiskSpool, n: usize) -> Producer {
    let producer = start(spool, &broker_down());
    let payload = "p".repeat(1000);
    let mut handles = Vec::new();
    for i in 0..n {
        handles.push(
            producer
                .send(rec(&format!("k{i}"), &payload))
                .await
                .unwrap(),
        );
    }
    for h in &handles {
        h.durable().await.unwrap();
    }
    producer
}

/// Flips a bit in the first record's payload in `segment`: corruption
/// recovery quarantines from that frame on.
fn corrupt_first_record(segment: &Path) {
    let mut bytes = fs::read(segment).unwrap();
    let at = SEGMENT_HEADER_LEN + FRAME_HEADER_LEN + 4;
    bytes[at] ^= 0x40;
    // Rewrites the existing file: its mode stays the spool's.
    fs::OpenOptions::new()
        .write(true)
        .open(segment)
        .unwrap()
        .write_all(&bytes)
        .unwrap();
}

#[test]
fn the_modes_are_the_documented_owner_only_ones() {
    assert_eq!(SPOOL_DIR_MODE, 0o700);
    assert_eq!(SPOOL_FILE_MODE, 0o600);
}

#[test]
fn a_new_spool_is_owner_only_through_sends_rolls_recovery_and_deletion_whatever_the_umask() {
    for mask in [0o000, 0o022, 0o002] {
        let _umask = Umask::set(mask);
        let tmp = tempfile::tempdir().unwrap();
        // Not there yet, nor its parent: the spool creates both.
        let dir = tmp.path().join("service").join("spool");
        let config = || spool_config(&dir, FsyncPolicy::Always);
        let when = |step: &str| format!("umask {mask:03o}, {step}");

        runtime().block_on(async {
            // Records through a producer, over several 64 KiB segments.
            let spool = DiskSpool::open(config()).unwrap();
            assert!(spool.recovery().permission_warnings.is_empty());
            let producer = send_durable(&spool, 300).await;
            assert!(
                spool.stats().segments >= 3,
                "segments rolled: {:?}",
                spool.stats()
            );
            assert_owner_only(&dir, &when("after sends and segment rolls"));
            producer.close(Duration::from_millis(50)).await;
            drop((producer, spool));
            assert!(segments(&dir).len() >= 3, "{:?}", files(&dir));

            // A corrupt segment: recovery writes a quarantine file and
            // rewrites the ledger.
            let before = segments(&dir);
            corrupt_first_record(&before[0]);
            let spool = DiskSpool::open(config()).unwrap();
            let report = spool.recovery().clone();
            assert!(!report.quarantined.is_empty(), "{report:?}");
            assert!(
                files(&dir).iter().any(|(n, _)| n.ends_with(".quarantine")),
                "{:?}",
                files(&dir)
            );
            assert!(report.permission_warnings.is_empty(), "{report:?}");
            assert_owner_only(&dir, &when("after recovery quarantined a tail"));

            // Everything replayed is delivered: settled segments are
            // deleted and the ledger is rewritten while the spool runs.
            let broker = broker_up();
            let producer = start(&spool, &broker);
            producer.flush(Duration::from_secs(30)).await.unwrap();
            let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
            while segments(&dir).iter().any(|s| before.contains(s)) {
                assert!(
                    tokio::time::Instant::now() < deadline,
                    "settled segments not deleted: {:?}",
                    files(&dir)
                );
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            assert_eq!(broker.payloads().len(), report.replayed);
            assert_owner_only(&dir, &when("after settled segments were deleted"));
            producer.close(Duration::from_secs(1)).await;
        });
        assert_eq!(mode(&dir), 0o700, "{}", when("after close"));
    }
}

/// A `tracing` writer into a shared buffer.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Opens the spool in `dir` and returns it with the log of the open.
fn open_logged(dir: &Path) -> (DiskSpool, String) {
    let log = Captured::default();
    let writer = log.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(move || writer.clone())
        .with_max_level(tracing::Level::WARN)
        .finish();
    let spool = tracing::subscriber::with_default(subscriber, || {
        DiskSpool::open(spool_config(dir, FsyncPolicy::Always)).unwrap()
    });
    let text = String::from_utf8(log.0.lock().unwrap().clone()).unwrap();
    (spool, text)
}

#[test]
fn an_existing_directory_and_files_open_to_others_are_reported_and_left_as_they_are() {
    let _umask = Umask::set(0o022);
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("shared");
    fs::create_dir(&dir).unwrap();
    fs::set_permissions(&dir, fs::Permissions::from_mode(0o755)).unwrap();

    // A directory others can read: opens, warns, says how to fix it.
    let (spool, log) = open_logged(&dir);
    let warnings = &spool.recovery().permission_warnings;
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert_eq!(warnings[0].path, dir);
    assert_eq!(warnings[0].mode, 0o755);
    assert!(warnings[0].is_dir);
    assert_eq!(warnings[0].fix(), format!("chmod 700 {}", dir.display()));
    assert!(warnings[0].to_string().contains("0755"), "{}", warnings[0]);
    assert!(log.contains("WARN"), "{log}");
    assert!(log.contains(&dir.display().to_string()), "{log}");
    assert!(log.contains("0755"), "{log}");
    assert!(log.contains("chmod 700"), "{log}");
    assert_eq!(mode(&dir), 0o755, "the directory is not chmodded");

    // The files the spool creates in it are owner-only all the same.
    runtime().block_on(async {
        let producer = send_durable(&spool, 20).await;
        producer.close(Duration::from_millis(50)).await;
    });
    drop(spool);
    let created = files(&dir);
    assert!(created.iter().all(|(_, m)| *m == 0o600), "{created:?}");

    // Spool files opened to others (a segment holding records, the lock)
    // are reported too, and keep their modes; a file that is not the
    // spool's is not looked at.
    let segment = segments(&dir)[0].clone();
    let lock = dir.join("lock");
    let other = dir.join("notes.txt");
    fs::write(&other, "not the spool's").unwrap();
    fs::set_permissions(&segment, fs::Permissions::from_mode(0o644)).unwrap();
    fs::set_permissions(&lock, fs::Permissions::from_mode(0o660)).unwrap();
    fs::set_permissions(&other, fs::Permissions::from_mode(0o666)).unwrap();
    let (spool, log) = open_logged(&dir);
    assert_eq!(spool.recovery().replayed, 20);
    let found: Vec<(PathBuf, u32, bool)> = spool
        .recovery()
        .permission_warnings
        .iter()
        .map(|w| (w.path.clone(), w.mode, w.is_dir))
        .collect();
    let mut expected = vec![
        (dir.clone(), 0o755, true),
        (segment.clone(), 0o644, false),
        (lock.clone(), 0o660, false),
    ];
    expected.sort();
    assert_eq!(found, expected);
    assert!(
        log.contains(&format!("chmod 600 {}", segment.display())),
        "{log}"
    );
    assert_eq!(mode(&dir), 0o755);
    assert_eq!(mode(&segment), 0o644);
    assert_eq!(mode(&lock), 0o660);
    assert_eq!(mode(&other), 0o666);
    // Files written at this open (the new segment, the ledger) are 0600.
    assert_eq!(mode(&dir.join("ledger")), 0o600);
    let newest = segments(&dir).last().unwrap().clone();
    assert_ne!(newest, segment);
    assert_eq!(mode(&newest), 0o600);
}
