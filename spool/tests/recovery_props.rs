//! Property tests of recovery: a spool directory written in the on-disk
//! format (records in several segments, settle marks between them, a
//! ledger), then damaged — truncated, one bit flipped, a range zeroed, the
//! ledger hit — and opened.
//!
//! Checked every case: opening never panics and never fails; the records
//! replayed are exactly the records not settled that lie before the damage
//! (in the damaged segment) or in undamaged segments, in their original
//! order, byte for byte; every single-bit flip and every changed byte is
//! detected (reported as torn or quarantined); every torn tail is detected
//! (a cut inside a frame), a cut on a frame boundary is a clean end; and a
//! second open finds nothing more to repair and replays the same records
//! (no crash loop).
//!
//! Half the cases write preallocated segments (flagged, frames with their
//! end byte, zeros after the last frame as in reserved space): there the
//! zeros are not damage, a cut or a zeroed range in them changes nothing,
//! and a bit flipped in them loses nothing and is reported.
//!
//! Half the cases write encrypted segments (format version 2: sealed
//! frames, built here from the format's documented nonce and associated
//! data, read with the key supplied): damage is detected and repaired
//! exactly as in clear segments.
//!
//! Runs in a RAM file system (`/dev/shm`) where there is one, so that fsync
//! costs nothing. `PROPTEST_CASES` sets the cases (1000 in CI).

#![expect(
    clippy::unwrap_used,
    reason = "a test fails loudly on an unexpected error"
)]

use std::collections::BTreeSet;
use std::path::Path;

use aes_gcm::aead::{AeadInPlace, KeyInit};
use aes_gcm::{Aes256Gcm, Nonce};
use proptest::prelude::*;
use robust_producer::Record;
use robust_producer_spool::format::{self, FLAG_PREALLOCATED, FrameKind, Ledger};
use robust_producer_spool::{DiskSpool, EncryptionKey, FsyncPolicy, SpoolConfig, codec};

/// The key encrypted layouts are written with.
const KEY: [u8; 32] = [0x3C; 32];
const KEY_ID: u32 = 5;

/// AES-256-GCM as the format module documents it: nonce = salt ++ offset
/// (u32), associated data = segment header bytes 0..32 ++ frame header
/// bytes 0..16.
fn seal(aad_header: &[u8], offset: usize, frame_header: &[u8], payload: &mut [u8]) -> [u8; 16] {
    let cipher = Aes256Gcm::new(&KEY.into());
    let mut nonce = [0u8; 12];
    nonce[..8].copy_from_slice(&aad_header[24..32]);
    nonce[8..].copy_from_slice(&u32::try_from(offset).unwrap().to_le_bytes());
    let aad = [&aad_header[..32], frame_header].concat();
    cipher
        .encrypt_in_place_detached(Nonce::from_slice(&nonce), &aad, payload)
        .unwrap()
        .into()
}

/// One frame of the layout, as written.
#[derive(Debug, Clone)]
struct Written {
    segment: usize,
    end: usize,
    kind: FrameKind,
    seq: u64,
    settles: Vec<u64>,
    record: Option<Record>,
}

#[derive(Debug, Clone)]
struct Layout {
    files: Vec<Vec<u8>>,
    /// Bytes written in each file (the rest is unused reserved space).
    written: Vec<usize>,
    frames: Vec<Written>,
    ledger: Ledger,
}

#[derive(Debug, Clone)]
enum Damage {
    None,
    /// Cut segment `seg` to this fraction of its length.
    Truncate {
        seg: usize,
        at: f64,
    },
    /// Flip one bit of segment `seg`, at this fraction of its bits.
    Flip {
        seg: usize,
        at: f64,
    },
    /// Zero `len` bytes of segment `seg` from this fraction of its length.
    Zero {
        seg: usize,
        at: f64,
        len: usize,
    },
    /// Flip one bit of the ledger.
    Ledger {
        bit: usize,
    },
}

fn record(i: usize, pad: usize) -> Record {
    let mut r = Record::new("t", format!("r{i}-{}", "p".repeat(pad)).into_bytes());
    if !i.is_multiple_of(3) {
        r = r.with_key(format!("k{}", i % 5).into_bytes());
    }
    if i.is_multiple_of(4) {
        r = r.with_header("event_id", format!("e{i}").into_bytes());
    }
    r
}

/// Builds the layout: `plan` is, per record, its padding, whether a segment
/// ends after it, and which earlier records (by back-offset) a settle frame
/// after it names.
/// `reserved`: preallocated segments with this many zeros after the frames.
/// `encrypted`: encrypted segments under [`KEY`].
fn layout(
    plan: &[(usize, bool, Vec<usize>)],
    watermark_fraction: f64,
    reserved: Option<usize>,
    encrypted: bool,
) -> Layout {
    let header = |index: u64| match (encrypted, reserved) {
        (true, _) => {
            let flags = if reserved.is_some() {
                FLAG_PREALLOCATED
            } else {
                0
            };
            let salt = index.wrapping_mul(0x9E37_79B9_7F4A_7C15);
            format::encrypted_segment_header(index, flags, KEY_ID, salt, |aad| {
                seal(aad, 0, &[], &mut [])
            })
            .to_vec()
        }
        (false, Some(_)) => format::preallocated_segment_header(index).to_vec(),
        (false, None) => format::segment_header(index).to_vec(),
    };
    let push = |file: &mut Vec<u8>, kind, seq, payload: &[u8]| {
        if encrypted {
            let at = file.len();
            let segment_header = file[..32].to_vec();
            assert!(format::push_sealed_frame_with(
                file,
                kind,
                seq,
                |out| out.extend_from_slice(payload),
                |h, p| Some(seal(&segment_header, at, h, p)),
            ));
        } else {
            format::push_frame(file, kind, seq, payload);
        }
        if reserved.is_some() {
            format::push_frame_end(file);
        }
    };
    let mut files = vec![header(1)];
    let mut frames = Vec::new();
    let mut seqs = Vec::new();
    let mut settled_so_far = BTreeSet::new();
    for (i, (pad, roll, settle)) in plan.iter().enumerate() {
        let seq = 10 + 3 * i as u64; // increasing, with gaps
        let rec = record(i, *pad);
        let mut payload = Vec::new();
        assert!(codec::encode(&rec, &mut payload));
        push(files.last_mut().unwrap(), FrameKind::Record, seq, &payload);
        frames.push(Written {
            segment: files.len() - 1,
            end: files.last().unwrap().len(),
            kind: FrameKind::Record,
            seq,
            settles: Vec::new(),
            record: Some(rec),
        });
        seqs.push(seq);
        let named: BTreeSet<u64> = settle
            .iter()
            .filter_map(|back| seqs.len().checked_sub(1 + back).map(|j| seqs[j]))
            .collect();
        if !named.is_empty() {
            let ranges: Vec<(u64, u64)> = named.iter().map(|&s| (s, s)).collect();
            let mut p = Vec::new();
            format::settled_payload(&ranges, &mut p);
            push(files.last_mut().unwrap(), FrameKind::Settled, 0, &p);
            frames.push(Written {
                segment: files.len() - 1,
                end: files.last().unwrap().len(),
                kind: FrameKind::Settled,
                seq: 0,
                settles: named.iter().copied().collect(),
                record: None,
            });
            settled_so_far.extend(named);
        }
        if *roll && i + 1 < plan.len() {
            files.push(header(files.len() as u64 + 1));
        }
    }
    // The ledger's watermark: records up to it settled, whether or not a
    // settle frame says so (their marks were in deleted segments).
    let limit = (seqs.len() as f64 * watermark_fraction) as usize;
    let watermark = limit.checked_sub(1).map_or(0, |i| seqs[i]);
    let _ = &settled_so_far;
    let ledger = Ledger {
        watermark,
        next_seq: seqs.last().map_or(1, |s| s + 1),
        next_index: files.len() as u64 + 1,
    };
    let written = files.iter().map(Vec::len).collect();
    for file in &mut files {
        file.resize(file.len() + reserved.unwrap_or(0), 0);
    }
    Layout {
        files,
        written,
        frames,
        ledger,
    }
}

fn seg_name(index: usize) -> String {
    format!("{:020}.seg", index + 1)
}

fn tempdir() -> tempfile::TempDir {
    match Path::new("/dev/shm").is_dir() {
        true => tempfile::tempdir_in("/dev/shm").unwrap(),
        false => tempfile::tempdir().unwrap(),
    }
}

/// Opens the spool in `dir`, with the layouts' key supplied (for reading
/// only: the session's new segment is in clear either way).
fn open(dir: &Path) -> DiskSpool {
    DiskSpool::open(
        SpoolConfig::builder(dir)
            .segment_bytes(64 << 10)
            .max_bytes(1 << 20)
            .fsync(FsyncPolicy::Never)
            .decryption_key(EncryptionKey::new(KEY_ID, KEY))
            .build()
            .unwrap(),
    )
    .expect("recovery must not fail because of what it reads")
}

/// The records the open spool hands to a producer.
fn replayed(spool: &DiskSpool) -> Vec<Record> {
    use robust_producer::{Spool, SpoolSignal};
    spool.open_session(SpoolSignal::new()).unwrap()
}

fn plan_strategy() -> impl Strategy<Value = Vec<(usize, bool, Vec<usize>)>> {
    prop::collection::vec(
        (
            0usize..120,
            prop::bool::weighted(0.2),
            prop::collection::vec(0usize..6, 0..3),
        ),
        1..40,
    )
}

fn damage_strategy() -> impl Strategy<Value = Damage> {
    prop_oneof![
        1 => Just(Damage::None),
        3 => (0usize..8, 0.0f64..1.0).prop_map(|(seg, at)| Damage::Truncate { seg, at }),
        4 => (0usize..8, 0.0f64..1.0).prop_map(|(seg, at)| Damage::Flip { seg, at }),
        2 => (0usize..8, 0.0f64..1.0, 1usize..64).prop_map(|(seg, at, len)| Damage::Zero { seg, at, len }),
        1 => (0usize..format::LEDGER_LEN * 8).prop_map(|bit| Damage::Ledger { bit }),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: std::env::var("PROPTEST_CASES").ok().and_then(|c| c.parse().ok()).unwrap_or(1000),
        // Beside this file; cargo runs tests from the package's folder.
        failure_persistence: Some(Box::new(proptest::test_runner::FileFailurePersistence::Direct(
            "tests/recovery_props.proptest-regressions"
        ))),
        ..ProptestConfig::default()
    })]

    #[test]
    fn recovery_keeps_exactly_the_valid_prefix_and_detects_all_damage(
        plan in plan_strategy(),
        watermark in 0.0f64..1.0,
        damage in damage_strategy(),
        reserved in prop::option::of(0usize..300),
        encrypted: bool,
    ) {
        let layout = layout(&plan, watermark, reserved, encrypted);
        let header_len = if encrypted {
            format::ENCRYPTED_SEGMENT_HEADER_LEN
        } else {
            format::SEGMENT_HEADER_LEN
        };
        let dir = tempdir();
        let mut files = layout.files.clone();
        let mut ledger = layout.ledger.encode().to_vec();

        // Apply the damage; find the damaged segment and its first changed
        // byte (a cut counts from the new end).
        let mut hit: Option<(usize, usize)> = None; // (segment, offset)
        let mut changed = false;
        let mut on_boundary = false;
        // The damage hit only unused reserved space.
        let mut in_unused = false;
        match damage {
            Damage::None => {}
            Damage::Truncate { seg, at } => {
                let seg = seg % files.len();
                let len = files[seg].len();
                let cut = ((len as f64) * at) as usize;
                files[seg].truncate(cut);
                changed = cut < layout.written[seg];
                let ends: BTreeSet<usize> = layout
                    .frames
                    .iter()
                    .filter(|f| f.segment == seg)
                    .map(|f| f.end)
                    .chain([header_len])
                    .collect();
                on_boundary = ends.contains(&cut);
                if changed {
                    hit = Some((seg, cut));
                }
            }
            Damage::Flip { seg, at } => {
                let seg = seg % files.len();
                let bit = ((files[seg].len() * 8) as f64 * at) as usize;
                files[seg][bit / 8] ^= 1 << (bit % 8);
                changed = true;
                in_unused = bit / 8 >= layout.written[seg];
                hit = Some((seg, bit / 8));
            }
            Damage::Zero { seg, at, len } => {
                let seg = seg % files.len();
                let from = ((files[seg].len() as f64) * at) as usize;
                let to = (from + len).min(files[seg].len());
                if let Some(first) = (from..to).find(|&i| files[seg][i] != 0) {
                    changed = true;
                    hit = Some((seg, first));
                }
                files[seg][from..to].fill(0);
            }
            Damage::Ledger { bit } => {
                ledger[bit / 8] ^= 1 << (bit % 8);
            }
        }
        for (i, f) in files.iter().enumerate() {
            std::fs::write(dir.path().join(seg_name(i)), f).unwrap();
        }
        std::fs::write(dir.path().join("ledger"), &ledger).unwrap();

        // What must come back: records in frames before the damage (or in
        // other segments), not settled by a surviving settle frame or by
        // the ledger (when it is intact).
        let lost = |f: &Written| match hit {
            Some((seg, at)) if f.segment == seg => {
                at < header_len || f.end > at
            }
            _ => false,
        };
        let ledger_ok = !matches!(damage, Damage::Ledger { .. });
        let settled: BTreeSet<u64> = layout
            .frames
            .iter()
            .filter(|f| f.kind == FrameKind::Settled && !lost(f))
            .flat_map(|f| f.settles.iter().copied())
            .collect();
        let expected: Vec<Record> = layout
            .frames
            .iter()
            .filter(|f| f.kind == FrameKind::Record && !lost(f))
            .filter(|f| !settled.contains(&f.seq))
            .filter(|f| !(ledger_ok && f.seq <= layout.ledger.watermark))
            .map(|f| f.record.clone().unwrap())
            .collect();

        let spool = open(dir.path());
        let report = spool.recovery().clone();
        let got = replayed(&spool);
        prop_assert_eq!(&got, &expected, "report: {:?}", report);

        // Detection.
        let found = report.torn_tails.len() + report.quarantined.len();
        match damage {
            Damage::Flip { .. } if in_unused => prop_assert!(found > 0, "flip in unused space not reported: {:?}", report),
            Damage::Flip { .. } => prop_assert!(!report.quarantined.is_empty(), "flip not detected: {:?}", report),
            Damage::Truncate { .. } if changed && !on_boundary => {
                prop_assert!(found > 0, "torn tail not detected: {:?}", report);
            }
            Damage::Truncate { .. } => prop_assert_eq!(found, 0, "a clean cut reported: {:?}", report),
            Damage::Zero { .. } if changed => prop_assert!(found > 0, "zeroed bytes not detected: {:?}", report),
            Damage::Ledger { .. } => prop_assert!(report.ledger_problem.is_some()),
            _ => prop_assert_eq!(found, 0, "{:?}", report),
        }
        for q in &report.quarantined {
            let to = q.moved_to.as_ref().unwrap();
            prop_assert!(to.exists(), "quarantine file {} missing", to.display());
        }
        drop(spool);

        // A second open has nothing left to repair and replays the same.
        let again = open(dir.path());
        prop_assert!(again.recovery().torn_tails.is_empty() && again.recovery().quarantined.is_empty(),
            "second open still repairs: {:?}", again.recovery());
        prop_assert_eq!(replayed(&again), expected);
    }
}
