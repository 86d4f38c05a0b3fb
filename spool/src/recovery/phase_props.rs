//! Property tests of recovery's pure phases, each on its own: reading a
//! damaged segment, the repair decided for it, merging settled ranges,
//! keeping the live records, the dead segments and the ledger's next
//! values. `PROPTEST_CASES` sets the cases (256 by default).

use proptest::collection::vec;
use proptest::prelude::*;
use robust_producer::Record;

use super::Segment;
use super::phases::SegmentRead;
use super::phases::{
    Repair, SettledSeqs, dead_prefix, keep_live, merge_ranges, next_index, next_seq, read_segment,
    repair_for, watermark_after,
};
use crate::codec;
use crate::encryption::{Keyring, Keys, Sealer, test_key};
use crate::format::{self, ENCRYPTED_SEGMENT_HEADER_LEN, End, FrameKind, SEGMENT_HEADER_LEN};

/// The segment index the tests write and read.
const INDEX: u64 = 3;

fn cases() -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|c| c.parse().ok())
        .unwrap_or(256)
}

/// One frame to write.
#[derive(Debug, Clone)]
enum Planned {
    /// A record whose sequence number is `gap` above the previous one.
    Record { gap: u64, pad: usize },
    /// A record frame with a valid checksum whose payload does not decode.
    Junk,
    /// A settled frame naming these ranges.
    Settled(Vec<(u64, u64)>),
}

fn planned() -> impl Strategy<Value = Planned> {
    prop_oneof![
        6 => (1..4u64, 0..24usize).prop_map(|(gap, pad)| Planned::Record { gap, pad }),
        1 => Just(Planned::Junk),
        3 => vec((0..40u64, 0..4u64), 0..4)
            .prop_map(|r| Planned::Settled(r.into_iter().map(|(a, l)| (a, a + l)).collect())),
    ]
}

/// A segment as written: its bytes, and for each frame where it ends and
/// what a reader should get from it.
#[derive(Debug)]
struct Built {
    bytes: Vec<u8>,
    frames: Vec<BuiltFrame>,
}

#[derive(Debug)]
struct BuiltFrame {
    start: usize,
    end: usize,
    /// The record and its sequence number; `None` for a settled frame.
    record: Option<(Record, u64)>,
    ranges: Vec<(u64, u64)>,
    junk: bool,
}

fn record(seq: u64, pad: usize) -> Record {
    Record::new("t", format!("r{seq}-{}", "p".repeat(pad)).into_bytes())
}

/// The header length of a segment, encrypted or not.
fn header_len(encrypted: bool) -> usize {
    if encrypted {
        ENCRYPTED_SEGMENT_HEADER_LEN
    } else {
        SEGMENT_HEADER_LEN
    }
}

/// Reads a segment with the test key supplied.
fn read_keyed(bytes: &[u8], after_seq: u64) -> SegmentRead {
    let keys = Keyring::new(&Keys {
        current: Some(test_key()),
        old: Vec::new(),
    });
    match read_segment(bytes, INDEX, after_seq, &keys) {
        Ok(read) => read,
        Err(problem) => panic!("the test key reads every segment: {problem:?}"),
    }
}

fn build(plan: &[Planned], after_seq: u64, preallocated: bool, encrypted: bool) -> Built {
    let sealer = encrypted.then(|| Sealer::new(&test_key()).unwrap());
    let mut bytes = match &sealer {
        Some(sealer) => sealer.segment_header(INDEX, preallocated),
        None if preallocated => format::preallocated_segment_header(INDEX).to_vec(),
        None => format::segment_header(INDEX).to_vec(),
    };
    let aad: [u8; 32] = bytes[..32].try_into().unwrap();
    let mut frames = Vec::new();
    let mut seq = after_seq;
    for p in plan {
        let start = bytes.len();
        let mut payload = Vec::new();
        let (kind, frame_seq, built_record, ranges, junk) = match p {
            Planned::Record { gap, pad } => {
                seq += gap;
                let r = record(seq, *pad);
                assert!(codec::encode(&r, &mut payload));
                (FrameKind::Record, seq, Some((r, seq)), Vec::new(), false)
            }
            Planned::Junk => {
                seq += 1;
                assert!(codec::encode(&record(seq, 0), &mut payload));
                payload.push(0); // trailing byte: does not decode
                (FrameKind::Record, seq, None, Vec::new(), true)
            }
            Planned::Settled(ranges) => {
                format::settled_payload(ranges, &mut payload);
                (FrameKind::Settled, 0, None, ranges.clone(), false)
            }
        };
        match &sealer {
            Some(sealer) => assert!(format::push_sealed_frame_with(
                &mut bytes,
                kind,
                frame_seq,
                |o| o.extend_from_slice(&payload),
                |h, p| sealer.seal(&aad, start as u64, h, p),
            )),
            None => format::push_frame(&mut bytes, kind, frame_seq, &payload),
        }
        if preallocated {
            format::push_frame_end(&mut bytes);
        }
        frames.push(BuiltFrame {
            start,
            end: bytes.len(),
            record: built_record,
            ranges,
            junk,
        });
    }
    Built { bytes, frames }
}

/// Damage done to a written segment.
#[derive(Debug, Clone)]
enum Hit {
    None,
    /// Cut the file at this fraction of its length.
    Cut(f64),
    /// Flip one bit at this fraction of its bits.
    Flip(f64),
    /// Zero everything from this fraction of its length (as a crash leaves
    /// the reserved space of a preallocated segment).
    ZeroFrom(f64),
}

fn hit() -> impl Strategy<Value = Hit> {
    prop_oneof![
        Just(Hit::None),
        (0.0..1.0).prop_map(Hit::Cut),
        (0.0..1.0).prop_map(Hit::Flip),
        (0.0..1.0).prop_map(Hit::ZeroFrom),
    ]
}

/// Applies `hit`; returns the damaged bytes and the first byte position
/// the damage changed or cut (`None`: nothing changed).
fn damage(bytes: &[u8], hit: &Hit) -> (Vec<u8>, Option<usize>) {
    let mut d = bytes.to_vec();
    let at = |f: f64, n: usize| ((f * n as f64) as usize).min(n.saturating_sub(1));
    let first = match *hit {
        Hit::None => None,
        Hit::Cut(f) => {
            let p = at(f, d.len() + 1);
            d.truncate(p);
            Some(p)
        }
        Hit::Flip(f) => {
            let bit = at(f, d.len() * 8);
            d[bit / 8] ^= 1 << (bit % 8);
            Some(bit / 8)
        }
        Hit::ZeroFrom(f) => {
            let p = at(f, d.len());
            d[p..].fill(0);
            // Bytes that were zeros already are not damage.
            (p..d.len()).find(|&i| bytes[i] != 0)
        }
    };
    (d, first)
}

/// The frames a reader must get: those that end before the damage, up to
/// the first junk frame.
fn expected(built: &Built, first_damaged: Option<usize>) -> &[BuiltFrame] {
    let intact = built
        .frames
        .iter()
        .take_while(|f| first_damaged.is_none_or(|p| f.end <= p))
        .count();
    let upto_junk = built.frames.iter().position(|f| f.junk).unwrap_or(intact);
    &built.frames[..intact.min(upto_junk)]
}

/// Segments over `counts[i]` records each, with increasing sequence
/// numbers (gaps from `gaps`): the sequence numbers, and the segments
/// (each with the highest sequence number in it or before it).
fn layout(counts: &[usize], gaps: &[u64]) -> (Vec<u64>, Vec<Segment>) {
    let mut seqs = Vec::new();
    let mut segments = Vec::new();
    let mut seq = 0;
    let mut gaps = gaps.iter().cycle();
    for (i, &n) in counts.iter().enumerate() {
        for _ in 0..n {
            seq += gaps.next().copied().unwrap_or(1);
            seqs.push(seq);
        }
        segments.push(Segment {
            index: i as u64 + 1,
            len: SEGMENT_HEADER_LEN as u64,
            first_live: None,
            last_seq: seq,
        });
    }
    (seqs, segments)
}

fn ranges() -> impl Strategy<Value = Vec<(u64, u64)>> {
    vec((0..60u64, 0..6u64), 0..8).prop_map(|r| r.into_iter().map(|(a, l)| (a, a + l)).collect())
}

fn in_ranges(ranges: &[(u64, u64)], seq: u64) -> bool {
    ranges.iter().any(|&(a, b)| a <= seq && seq <= b)
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: cases(),
        // Beside this file; cargo runs tests from the package's folder.
        failure_persistence: Some(Box::new(proptest::test_runner::FileFailurePersistence::Direct(
            "src/recovery/phase_props.proptest-regressions"
        ))),
        ..ProptestConfig::default()
    })]

    /// Every frame before the first damaged byte (and before the first
    /// frame that does not decode) is read, in order and intact; nothing
    /// after it is; the valid prefix ends where the last frame read ends.
    #[test]
    fn a_segment_read_keeps_every_frame_before_the_damage(
        plan in vec(planned(), 0..10),
        after_seq in 0..5u64,
        preallocated: bool,
        encrypted: bool,
        hit in hit(),
    ) {
        let mut built = build(&plan, after_seq, preallocated, encrypted);
        let header_len = header_len(encrypted);
        if preallocated {
            built.bytes.resize(built.bytes.len() + 40, 0);
        }
        let (bytes, first_damaged) = damage(&built.bytes, &hit);
        let read = read_keyed(&bytes, after_seq);
        if first_damaged.is_some_and(|p| p < header_len) {
            // A cut or a flip in the header makes it bad; zeros from
            // inside it too.
            prop_assert!(matches!(read.end, End::BadHeader { .. }), "{:?}", read.end);
            prop_assert!(read.records.is_empty() && read.ranges.is_empty());
            prop_assert_eq!(read.valid_len, 0);
            return Ok(());
        }
        let want = expected(&built, first_damaged);
        let want_records: Vec<_> = want.iter().filter_map(|f| f.record.clone()).collect();
        let got: Vec<_> = read.records.iter().cloned().zip(read.seqs.iter().copied()).collect();
        prop_assert_eq!(got, want_records);
        let want_ranges: Vec<_> = want.iter().flat_map(|f| f.ranges.clone()).collect();
        prop_assert_eq!(&read.ranges, &want_ranges);
        prop_assert_eq!(read.valid_len, want.last().map_or(header_len, |f| f.end));
        prop_assert!(read.seqs.windows(2).all(|w| w[0] < w[1]));
        prop_assert!(read.seqs.first().is_none_or(|&s| s > after_seq));
        if let Some(junk) = built.frames.iter().find(|f| f.junk)
            && first_damaged.is_none_or(|p| junk.end <= p)
        {
            prop_assert_eq!(
                &read.end,
                &End::Corrupt { offset: junk.start, reason: read_end_reason(&read.end) }
            );
        }
    }

    /// The repair starts where the valid prefix ends; only a bad header
    /// loses the segment; and once repaired (cut to its valid prefix) a
    /// segment reads the same and needs no more repair.
    #[test]
    fn repairs_start_at_the_valid_prefix_and_are_idempotent(
        plan in vec(planned(), 0..10),
        preallocated: bool,
        encrypted: bool,
        hit in hit(),
        is_last: bool,
    ) {
        let mut built = build(&plan, 0, preallocated, encrypted);
        if preallocated {
            built.bytes.resize(built.bytes.len() + 40, 0);
        }
        let (bytes, _) = damage(&built.bytes, &hit);
        let read = read_keyed(&bytes, 0);
        let bad_header = matches!(read.end, End::BadHeader { .. });
        let repair = repair_for(read.end.clone(), is_last, &bytes);
        prop_assert_eq!(repair.keeps_segment(), !bad_header);
        match &repair {
            Repair::Keep => prop_assert_eq!(read.valid_len, bytes.len()),
            Repair::CutUnused { offset }
            | Repair::TruncateTorn { offset, .. }
            | Repair::QuarantineTail { offset, .. } => {
                prop_assert_eq!(*offset, read.valid_len);
                prop_assert!(*offset < bytes.len());
            }
            Repair::RemoveUnfinished { .. } => {
                // Only the newest file, and only when nothing was written.
                prop_assert!(is_last);
                prop_assert!(
                    bytes.len() < format::segment_header_len(&bytes) || bytes.iter().all(|&b| b == 0)
                );
            }
            Repair::QuarantineWhole { .. } => prop_assert!(bad_header),
        }
        if !bad_header {
            let again = read_keyed(&bytes[..read.valid_len], 0);
            prop_assert_eq!(&again.end, &End::Clean);
            prop_assert_eq!(again.valid_len, read.valid_len);
            prop_assert_eq!(&again.records, &read.records);
            prop_assert_eq!(&again.seqs, &read.seqs);
            prop_assert_eq!(&again.ranges, &read.ranges);
            prop_assert_eq!(repair_for(again.end, is_last, &bytes[..read.valid_len]), Repair::Keep);
        }
    }

    /// Merged ranges cover exactly the same sequence numbers, sorted,
    /// disjoint and not adjacent, whatever the input order; merging again
    /// changes nothing.
    #[test]
    fn merged_ranges_cover_the_same_numbers(input in ranges(), watermark in 0..20u64) {
        let merged = merge_ranges(input.clone());
        prop_assert!(merged.iter().all(|&(a, b)| a <= b));
        prop_assert!(merged.windows(2).all(|w| w[0].1 + 1 < w[1].0));
        for seq in 0..80 {
            prop_assert_eq!(in_ranges(&merged, seq), in_ranges(&input, seq), "seq {}", seq);
        }
        prop_assert_eq!(merge_ranges(merged.clone()), merged.clone());
        let mut reversed = input.clone();
        reversed.reverse();
        prop_assert_eq!(merge_ranges(reversed), merged);
        let settled = SettledSeqs::new(watermark, input.clone());
        for seq in 0..80 {
            prop_assert_eq!(settled.contains(seq), seq <= watermark || in_ranges(&input, seq));
        }
    }

    /// Keeping the live records drops exactly the settled ones (every
    /// acknowledged sequence number, every one up to the watermark), keeps
    /// the others in order, points each segment at its first live record,
    /// and is idempotent. The segments before the first live record can
    /// go, and the watermark they raise never covers a live record. The
    /// next sequence number and segment index are above everything used.
    #[test]
    fn live_records_are_exactly_those_not_settled(
        counts in vec(0..5usize, 0..6),
        gaps in vec(1..4u64, 1..8),
        acked in ranges(),
        watermark in 0..30u64,
        ledger_next_seq in 0..80u64,
        ledger_next_index in 0..10u64,
    ) {
        let (seqs, mut segments) = layout(&counts, &gaps);
        let settled = SettledSeqs::new(watermark, acked.clone());
        // Records stand for themselves: record i is its position.
        let records: Vec<usize> = (0..seqs.len()).collect();
        let live = keep_live(records, seqs.clone(), &mut segments, &settled);

        let want: Vec<usize> = (0..seqs.len())
            .filter(|&i| !(seqs[i] <= watermark || in_ranges(&acked, seqs[i])))
            .collect();
        prop_assert_eq!(&live.records, &want);
        prop_assert_eq!(live.seqs.clone(), want.iter().map(|&i| seqs[i]).collect::<Vec<_>>());
        prop_assert_eq!(live.settled + live.records.len(), seqs.len());
        for s in &live.seqs {
            prop_assert!(*s > watermark && !in_ranges(&acked, *s));
        }
        let mut prev_last = 0;
        for seg in &segments {
            let first = live.seqs.iter().position(|&s| s > prev_last && s <= seg.last_seq);
            prop_assert_eq!(seg.first_live, first, "segment {}", seg.index);
            prev_last = seg.last_seq;
        }

        let (_, mut fresh) = layout(&counts, &gaps);
        let again = keep_live(live.records.clone(), live.seqs.clone(), &mut fresh, &settled);
        prop_assert_eq!(&again.records, &live.records);
        prop_assert_eq!(again.settled, 0);
        prop_assert_eq!(
            fresh.iter().map(|s| s.first_live).collect::<Vec<_>>(),
            segments.iter().map(|s| s.first_live).collect::<Vec<_>>()
        );

        let dead = dead_prefix(&segments);
        prop_assert!(segments[..dead].iter().all(|s| s.first_live.is_none()));
        prop_assert!(segments.get(dead).is_none_or(|s| s.first_live.is_some()));
        let new_watermark = watermark_after(&segments[..dead], watermark);
        prop_assert!(new_watermark >= watermark);
        prop_assert!(live.seqs.iter().all(|&s| s > new_watermark));

        let last_seq = seqs.last().copied().unwrap_or(0);
        let next = next_seq(ledger_next_seq, last_seq, &settled);
        prop_assert!(next > last_seq && next > watermark && next >= ledger_next_seq);
        prop_assert!(acked.iter().all(|&(_, b)| next > b));
        prop_assert!(next > new_watermark);
        let indexes: Vec<u64> = segments.iter().map(|s| s.index).collect();
        let index = next_index(&indexes, ledger_next_index);
        prop_assert!(indexes.iter().all(|&i| index > i) && index >= ledger_next_index);
    }
}

/// The reason of a corrupt end, to compare the rest of it.
fn read_end_reason(end: &End) -> String {
    match end {
        End::Corrupt { reason, .. } => reason.clone(),
        _ => String::new(),
    }
}
