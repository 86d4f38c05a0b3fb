//! Encryption at rest through the producer: records round-trip through an
//! encrypted spool and never reach the files in clear; key rotation; a
//! wrong or missing key is an error at open that changes nothing; a
//! changed or moved ciphertext is detected and quarantined, never replayed
//! as a wrong record; plaintext segments from before encryption are still
//! replayed; no key bytes in `Debug` output or errors.

#![expect(clippy::unwrap_used, reason = "a failed unwrap is a failed test")]

#[expect(dead_code, reason = "this test uses only some of the shared helpers")]
mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use common::{broker_down, broker_up, producer_config};
use robust_producer::{OverflowPolicy, Producer, Record, TokioRuntime};
use robust_producer_mock::ScriptedTransport;
use robust_producer_spool::format::{self, FRAME_HEADER_LEN, FrameKind};
use robust_producer_spool::{DiskSpool, EncryptionKey, FsyncPolicy, SpoolConfig, SpoolError};

/// A key with distinctive bytes, so that a leak is easy to spot.
fn key(id: u32, seed: u8) -> EncryptionKey {
    EncryptionKey::new(id, key_bytes(seed))
}

fn key_bytes(seed: u8) -> [u8; 32] {
    std::array::from_fn(|i| seed.wrapping_add((i as u8).wrapping_mul(37)) ^ 0xA5)
}

fn config(dir: &Path, current: Option<EncryptionKey>, old: &[EncryptionKey]) -> SpoolConfig {
    config_with(dir, current, old, true)
}

/// `preallocate`: see `SpoolConfig::preallocate`.
fn config_with(
    dir: &Path,
    current: Option<EncryptionKey>,
    old: &[EncryptionKey],
    preallocate: bool,
) -> SpoolConfig {
    let mut b = SpoolConfig::builder(dir)
        .segment_bytes(64 << 10)
        .max_bytes(8 << 20)
        .preallocate(preallocate)
        .fsync(FsyncPolicy::Always);
    if let Some(k) = current {
        b = b.encryption_key(k);
    }
    for k in old {
        b = b.decryption_key(k.clone());
    }
    b.build().unwrap()
}

fn start(spool: &DiskSpool, broker: &ScriptedTransport) -> Producer {
    Producer::builder(
        producer_config()
            .overflow(OverflowPolicy::Reject)
            .build()
            .unwrap(),
    )
    .spool(spool.clone())
    .start(broker.connection(), TokioRuntime::new())
    .unwrap()
}

/// A record whose payload starts with a distinctive marker, padded so
/// that a few hundred of them fill several segments.
fn note(tag: &str, i: usize) -> Record {
    let text = format!("PATIENT-NOTE-{tag}-{i:04} {}", "x".repeat(300));
    Record::new("notes", text.into_bytes()).with_key(format!("patient-{}", i % 7).into_bytes())
}

fn payloads(tag: &str, n: usize) -> Vec<String> {
    (0..n)
        .map(|i| String::from_utf8(note(tag, i).payload.to_vec()).unwrap())
        .collect()
}

/// Sends `n` notes through `spool` to a broker that is down, waits until
/// each is Durable, closes (they stay in the spool).
async fn spool_notes(spool: &DiskSpool, tag: &str, n: usize) {
    let producer = start(spool, &broker_down());
    let mut handles = Vec::new();
    for i in 0..n {
        handles.push(producer.send(note(tag, i)).await.unwrap());
    }
    for h in &handles {
        h.durable().await.unwrap();
    }
    assert!(producer.close(Duration::from_millis(50)).await.is_empty());
}

/// Replays what the spool holds to a broker that is up; returns the
/// payloads it received, in order.
async fn replay(spool: &DiskSpool) -> Vec<String> {
    let broker = broker_up();
    let producer = start(spool, &broker);
    producer.flush(Duration::from_secs(20)).await.unwrap();
    assert!(producer.close(Duration::from_secs(1)).await.is_empty());
    broker.payloads()
}

/// The segment files in `dir`, sorted, with their header's version and
/// key id (0 for version 1).
fn segments(dir: &Path) -> Vec<(PathBuf, u16, u32)> {
    let mut out: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "seg"))
        .map(|p| {
            let b = std::fs::read(&p).unwrap();
            let version = u16::from_le_bytes([b[8], b[9]]);
            let key_id = if version == 2 {
                u32::from_le_bytes(b[12..16].try_into().unwrap())
            } else {
                0
            };
            (p, version, key_id)
        })
        .collect();
    out.sort();
    out
}

fn quarantine_files(dir: &Path) -> usize {
    std::fs::read_dir(dir)
        .unwrap()
        .filter(|e| {
            let name = e.as_ref().unwrap().file_name();
            name.to_string_lossy().ends_with(".quarantine")
        })
        .count()
}

/// Every way a key's bytes could show up in text: hex (either case), and
/// runs of its bytes as a decimal or hex array.
fn assert_no_key_bytes(text: &str, seed: u8) {
    let bytes = key_bytes(seed);
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    let lower = text.to_lowercase();
    let dec = format!("{}, {}, {}", bytes[0], bytes[1], bytes[2]);
    let hex_list = format!("{:#04x}, {:#04x}", bytes[0], bytes[1]);
    for needle in [&hex[..8], &hex[8..16], &dec, &hex_list] {
        assert!(!lower.contains(needle), "key bytes ({needle}) in: {text}");
    }
}

#[tokio::test]
async fn records_round_trip_and_no_payload_reaches_the_files_in_clear() {
    for preallocate in [true, false] {
        round_trip(preallocate).await;
    }
}

async fn round_trip(preallocate: bool) {
    let config = |dir: &Path| config_with(dir, Some(key(1, 3)), &[], preallocate);
    let dir = tempfile::tempdir().unwrap();
    let spool = DiskSpool::open(config(dir.path())).unwrap();
    spool_notes(&spool, "rt", 400).await;
    drop(spool);

    let segs = segments(dir.path());
    assert!(segs.len() >= 3, "several segments: {segs:?}");
    assert!(segs.iter().all(|&(_, v, id)| v == 2 && id == 1), "{segs:?}");
    for entry in std::fs::read_dir(dir.path()).unwrap() {
        let path = entry.unwrap().path();
        let bytes = std::fs::read(&path).unwrap();
        for needle in [&b"PATIENT-NOTE"[..], b"patient-", b"notes", b"xxxxxxxx"] {
            assert!(
                !bytes.windows(needle.len()).any(|w| w == needle),
                "{} holds {:?} in clear",
                path.display(),
                String::from_utf8_lossy(needle)
            );
        }
    }

    let spool = DiskSpool::open(config(dir.path())).unwrap();
    assert_eq!(spool.recovery().replayed, 400);
    assert!(
        !spool.recovery().found_corruption(),
        "{:?}",
        spool.recovery()
    );
    assert_eq!(replay(&spool).await, payloads("rt", 400));
    drop(spool);
    let spool = DiskSpool::open(config(dir.path())).unwrap();
    assert_eq!(spool.recovery().replayed, 0, "delivered records settled");
    assert!(spool.recovery().torn_tails.is_empty() && !spool.recovery().found_corruption());
}

#[tokio::test]
async fn a_rotated_key_reads_old_segments_and_new_ones_use_the_new_key() {
    let dir = tempfile::tempdir().unwrap();
    let spool = DiskSpool::open(config(dir.path(), Some(key(1, 3)), &[])).unwrap();
    spool_notes(&spool, "old", 200).await;
    drop(spool);
    let before = segments(dir.path());

    // Key 2 current, key 1 kept for reading.
    let rotated = config(dir.path(), Some(key(2, 9)), &[key(1, 3)]);
    let spool = DiskSpool::open(rotated.clone()).unwrap();
    assert_eq!(spool.recovery().replayed, 200);
    // Still no broker: the old records stay, new ones join them.
    let producer = start(&spool, &broker_down());
    let mut handles = Vec::new();
    for i in 0..200 {
        handles.push(producer.send(note("new", i)).await.unwrap());
    }
    for h in &handles {
        h.durable().await.unwrap();
    }
    assert!(producer.close(Duration::from_millis(50)).await.is_empty());
    drop((producer, spool));

    let after = segments(dir.path());
    for (path, version, id) in &after {
        let old = before.iter().any(|(p, _, _)| p == path);
        assert_eq!(*version, 2);
        assert_eq!(*id, if old { 1 } else { 2 }, "{}", path.display());
    }
    assert!(after.iter().filter(|s| s.2 == 2).count() >= 2, "{after:?}");

    // Without key 1 the old segments cannot be read: an error, not a loss.
    let err = DiskSpool::open(config(dir.path(), Some(key(2, 9)), &[])).unwrap_err();
    assert!(
        matches!(&err, SpoolError::UnknownKey { key_id: 1, supplied, .. } if supplied == &[2]),
        "{err:?}"
    );

    let spool = DiskSpool::open(rotated).unwrap();
    let want: Vec<_> = payloads("old", 200)
        .into_iter()
        .chain(payloads("new", 200))
        .collect();
    assert_eq!(replay(&spool).await, want);
    drop(spool);
    // Every record delivered: the key-1 segments are gone, key 1 is no
    // longer needed.
    let spool = DiskSpool::open(config(dir.path(), Some(key(2, 9)), &[])).unwrap();
    assert_eq!(spool.recovery().replayed, 0);
    assert!(segments(dir.path()).iter().all(|s| s.2 == 2));
}

#[tokio::test]
async fn a_wrong_or_missing_key_is_an_error_at_open_that_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let spool = DiskSpool::open(config(dir.path(), Some(key(7, 3)), &[])).unwrap();
    spool_notes(&spool, "k", 100).await;
    drop(spool);
    let files_before = segments(dir.path());

    let attempts = [
        // Same id, other bytes.
        config(dir.path(), Some(key(7, 4)), &[]),
        // Another id.
        config(dir.path(), Some(key(8, 3)), &[]),
        // Encryption turned off, the key not supplied.
        config(dir.path(), None, &[]),
        // Only a wrong key kept for reading.
        config(dir.path(), None, &[key(7, 5)]),
    ];
    for (i, attempt) in attempts.into_iter().enumerate() {
        let err = DiskSpool::open(attempt.clone()).unwrap_err();
        let text = format!("{err} {err:?} {attempt:?}");
        match (&err, i) {
            (SpoolError::WrongKey { segment, key_id: 7 }, 0 | 3) => {
                assert_eq!(segment, &files_before[0].0);
                assert!(err.to_string().contains("key id 7"), "{err}");
            }
            (
                SpoolError::UnknownKey {
                    segment, key_id: 7, ..
                },
                1 | 2,
            ) => {
                assert_eq!(segment, &files_before[0].0);
                assert!(err.to_string().contains("decryption_key"), "{err}");
            }
            _ => panic!("attempt {i}: {err:?}"),
        }
        assert!(
            err.to_string()
                .contains(&*files_before[0].0.to_string_lossy())
        );
        for seed in [3, 4, 5] {
            assert_no_key_bytes(&text, seed);
        }
        assert_eq!(segments(dir.path()), files_before, "nothing changed");
        assert_eq!(quarantine_files(dir.path()), 0, "nothing quarantined");
    }

    // Encryption off with the key kept for reading: old records replay,
    // new segments are written in clear.
    let spool = DiskSpool::open(config(dir.path(), None, &[key(7, 3)])).unwrap();
    assert_eq!(spool.recovery().replayed, 100);
    assert_eq!(replay(&spool).await, payloads("k", 100));
    drop(spool);
    assert!(segments(dir.path()).iter().all(|s| s.1 == 1));
}

#[tokio::test]
async fn plaintext_segments_from_before_encryption_are_still_replayed() {
    let dir = tempfile::tempdir().unwrap();
    let spool = DiskSpool::open(config(dir.path(), None, &[])).unwrap();
    spool_notes(&spool, "clear", 150).await;
    drop(spool);

    let spool = DiskSpool::open(config(dir.path(), Some(key(1, 3)), &[])).unwrap();
    let report = spool.recovery();
    assert_eq!(report.replayed, 150);
    assert_eq!(
        report.plaintext_segments, report.segments_read,
        "{report:?}"
    );
    assert!(report.plaintext_segments >= 1);
    let producer = start(&spool, &broker_down());
    let h = producer.send(note("sealed", 0)).await.unwrap();
    h.durable().await.unwrap();
    assert!(producer.close(Duration::from_millis(50)).await.is_empty());
    drop((producer, spool));
    let segs = segments(dir.path());
    assert!(
        segs.iter().any(|s| s.1 == 1) && segs.last().unwrap().1 == 2,
        "{segs:?}"
    );

    let spool = DiskSpool::open(config(dir.path(), Some(key(1, 3)), &[])).unwrap();
    let want: Vec<_> = payloads("clear", 150)
        .into_iter()
        .chain(payloads("sealed", 1))
        .collect();
    assert_eq!(replay(&spool).await, want);
}

/// The record frames of the first segment: (offset, payload length).
fn record_frames(path: &Path) -> Vec<(usize, usize)> {
    let bytes = std::fs::read(path).unwrap();
    let scan = format::scan(&bytes, None, 0);
    assert!(scan.encrypted.is_some());
    scan.frames
        .iter()
        .filter(|f| f.kind == FrameKind::Record)
        .map(|f| (f.offset, f.payload.len()))
        .collect()
}

/// Rewrites a frame's payload checksum to match its (changed) payload, as
/// someone changing the file on purpose would.
fn fix_checksum(bytes: &mut [u8], offset: usize, len: usize) {
    let start = offset + FRAME_HEADER_LEN;
    let crc = crc32c::crc32c(&bytes[start..start + len]);
    bytes[offset + 20..offset + 24].copy_from_slice(&crc.to_le_bytes());
}

#[tokio::test]
async fn a_changed_or_moved_ciphertext_is_detected_and_never_replayed() {
    // 0: a flipped ciphertext byte (the checksum catches it); 1: the same
    // with its checksum fixed (authentication catches it); 2: two frames'
    // sealed payloads swapped, checksums and all.
    for case in 0..3 {
        let dir = tempfile::tempdir().unwrap();
        let spool = DiskSpool::open(config(dir.path(), Some(key(1, 3)), &[])).unwrap();
        spool_notes(&spool, "t", 60).await;
        drop(spool);
        let first = segments(dir.path())[0].0.clone();
        let frames = record_frames(&first);
        let (at, len) = frames[frames.len() / 2];
        let (next_at, next_len) = frames[frames.len() / 2 + 1];
        assert_eq!(len, next_len);
        let mut bytes = std::fs::read(&first).unwrap();
        let payload = at + FRAME_HEADER_LEN;
        match case {
            0 => bytes[payload + len / 2] ^= 0x10,
            1 => {
                bytes[payload + len / 2] ^= 0x10;
                fix_checksum(&mut bytes, at, len);
            }
            _ => {
                let a = bytes[payload..payload + len].to_vec();
                let next = next_at + FRAME_HEADER_LEN;
                let b = bytes[next..next + len].to_vec();
                bytes[payload..payload + len].copy_from_slice(&b);
                bytes[next..next + len].copy_from_slice(&a);
                fix_checksum(&mut bytes, at, len);
                fix_checksum(&mut bytes, next_at, len);
            }
        }
        std::fs::write(&first, &bytes).unwrap();

        let spool = DiskSpool::open(config(dir.path(), Some(key(1, 3)), &[])).unwrap();
        let report = spool.recovery().clone();
        assert_eq!(report.quarantined.len(), 1, "case {case}: {report:?}");
        let damage = &report.quarantined[0];
        assert_eq!(damage.offset, at as u64, "case {case}");
        if case > 0 {
            assert!(damage.reason.contains("authentication"), "{damage}");
        }
        let got = replay(&spool).await;
        // Exactly the records before the damaged frame, then those in the
        // later segments: none changed, none out of place.
        let all = payloads("t", 60);
        let cut = frames.len() / 2;
        assert_eq!(got[..cut], all[..cut], "case {case}");
        assert!(got.iter().all(|p| all.contains(p)), "case {case}");
        assert!(!got.contains(&all[cut]), "case {case}: the damaged record");
        let mut sorted = got.clone();
        sorted.sort();
        assert_eq!(sorted, got, "case {case}: in order");
    }
}

#[test]
fn debug_output_and_config_errors_never_show_key_bytes() {
    let config = SpoolConfig::builder("/tmp/spool")
        .encryption_key(key(1, 3))
        .decryption_key(key(2, 4))
        .build()
        .unwrap();
    let shown = format!("{config:?} {:?} {:#?}", key(1, 3), config);
    assert!(
        shown.contains("id: 1") && shown.contains("id: 2"),
        "{shown}"
    );
    for seed in [3, 4] {
        assert_no_key_bytes(&shown, seed);
    }
    assert_eq!(config.encryption_key_id(), Some(1));
    assert_eq!(config.key_ids(), [1, 2]);

    let err = SpoolConfig::builder("/tmp/spool")
        .encryption_key(key(1, 3))
        .decryption_key(key(1, 4))
        .build()
        .unwrap_err();
    assert!(err.to_string().contains("key id 1"), "{err}");
    assert_no_key_bytes(&format!("{err} {err:?}"), 3);
    assert_no_key_bytes(&format!("{err} {err:?}"), 4);

    let err = SpoolConfig::builder("/tmp/spool")
        .encryption_key(key(1, 3))
        .segment_bytes(8 << 30)
        .max_bytes(16 << 30)
        .build()
        .unwrap_err();
    assert!(err.to_string().contains("segment_bytes"), "{err}");
}

/// The fuzz seed `encrypted-3-frames` was sealed by another AES-GCM
/// implementation from the format module's description: the spool's
/// reader opens it, so the description and the code agree.
#[test]
fn a_segment_sealed_from_the_format_description_opens() {
    let seed = std::fs::read("../fuzz/seeds/segment_reader/encrypted-3-frames").unwrap();
    let segment = &seed[1..]; // the fuzz mode byte
    let scan = format::scan(segment, Some(1), 0);
    assert_eq!(scan.end, format::End::Clean);
    let header = scan.encrypted.as_ref().unwrap();
    assert_eq!(header.key_id, 3);
    let key = EncryptionKey::new(3, [0x2D; 32]);
    assert!(key.authenticates(header));
    assert!(!EncryptionKey::new(3, [0x2E; 32]).authenticates(header));
    let opened: Vec<Vec<u8>> = scan
        .frames
        .iter()
        .map(|f| key.open(header, f).unwrap())
        .collect();
    let hello = robust_producer_spool::codec::decode(&opened[0]).unwrap();
    assert_eq!(&hello.payload[..], b"hello");
    assert_eq!(format::parse_settled(&opened[1]), Some(vec![(1, 1)]));
    let world = robust_producer_spool::codec::decode(&opened[2]).unwrap();
    assert_eq!(&world.payload[..], b"world");
}
