//! After the run: every topic read back with an independent consumer and
//! checked ([`robust_producer_rdkafka::readback`]), the tables printed, and
//! the verdict that decides the exit code.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use rdkafka::message::{BorrowedMessage, Message};
use robust_producer::Stats;
use robust_producer_rdkafka::MetricsSnapshot;
use robust_producer_rdkafka::readback::{ReadBack, Report, Sent, check};

use crate::monitor::Observed;
use crate::services::Running;

/// `payload.seq` of an event envelope, which identifies a demo event.
fn seq_of_envelope(m: &BorrowedMessage<'_>) -> Option<String> {
    let v: serde_json::Value = serde_json::from_slice(m.payload()?).ok()?;
    Some(v.get("payload")?.get("seq")?.as_u64()?.to_string())
}

/// One service's read-back, and the sums over every service.
pub(crate) struct ReadBackResults {
    /// Per service: its name, events sent, and the check.
    per_service: Vec<(&'static str, u64, Report)>,
    /// Records read back, duplicates included.
    stored: usize,
    lost: usize,
    reordered: usize,
    duplicates: usize,
    unidentified: usize,
    /// Every service's check is clean.
    clean: bool,
}

/// Reads every service's topic back; `sent[i]` events were sent by
/// `running[i]`, numbered from 0.
pub(crate) fn read_back(bootstrap: &str, running: &[Running], sent: &[u64]) -> ReadBackResults {
    let mut results = ReadBackResults {
        per_service: Vec::new(),
        stored: 0,
        lost: 0,
        reordered: 0,
        duplicates: 0,
        unidentified: 0,
        clean: true,
    };
    for (r, &n) in running.iter().zip(sent) {
        let stored = ReadBack::new(bootstrap, &r.topic)
            .id_with(seq_of_envelope)
            .timeout(Duration::from_secs(120))
            .read()
            .unwrap_or_else(|e| panic!("{e}"));
        let expected: Vec<Sent> = (0..n)
            .map(|seq| Sent::keyed(r.service.key(seq), seq.to_string()))
            .collect();
        let v = check(&expected, &HashSet::new(), &stored);
        results.stored += v.stored;
        results.lost += v.missing.len();
        results.duplicates += v.duplicates;
        results.reordered += v.out_of_order;
        results.unidentified += v.unidentified;
        results.clean &= v.is_clean();
        results.per_service.push((r.service.name, n, v));
    }
    results
}

/// What the producers reported, and what happened after publishing.
pub(crate) struct Outcome<'a> {
    pub(crate) mock: bool,
    pub(crate) stats: &'a [(Stats, MetricsSnapshot)],
    /// Records handed back at close.
    pub(crate) returned: usize,
    pub(crate) observed: &'a Observed,
    pub(crate) start: Instant,
    pub(crate) finished: Instant,
}

/// Prints the per-service table and the summary; true when every accepted
/// event was delivered, stored once at least, and in order per key.
pub(crate) fn print(o: &Outcome<'_>, v: &ReadBackResults) -> bool {
    let stats = o.stats;
    let accepted: u64 = stats.iter().map(|(s, _)| s.accepted).sum();
    let delivered: u64 = stats.iter().map(|(s, _)| s.delivered).sum();
    println!();
    println!("| service | sent | stored | lost | reordered | duplicates |");
    println!("|---|---:|---:|---:|---:|---:|");
    for (name, n, r) in &v.per_service {
        println!(
            "| {name} | {n} | {} | {} | {} | {} |",
            r.stored,
            r.missing.len(),
            r.out_of_order,
            r.duplicates
        );
    }
    println!();
    println!("| summary | value |");
    println!("|---|---:|");
    println!("| accepted | {accepted} |");
    println!("| delivered (acknowledged, acks=all) | {delivered} |");
    println!(
        "| stored in Kafka (read back, duplicates included) | {} |",
        v.stored
    );
    println!("| lost | {} |", v.lost);
    println!("| reordered (per key) | {} |", v.reordered);
    println!("| duplicates (same event_id) | {} |", v.duplicates);
    println!("| without event_id | {} |", v.unidentified);
    print_run(o, delivered);
    v.clean && accepted == delivered && o.returned == 0
}

/// The summary's rows about the run: dead letters, rates, recovery times,
/// backlogs, reconnects, wall time.
fn print_run(o: &Outcome<'_>, delivered: u64) {
    let stats = o.stats;
    let observed = o.observed;
    let dead: u64 = stats.iter().map(|(s, _)| s.dead_lettered).sum();
    let link_losses: u64 = stats.iter().map(|(s, _)| s.link_losses).sum();
    let reconnects: u64 = stats.iter().map(|(s, _)| s.reconnect_attempts).sum();
    let rebuilt: u64 = stats
        .iter()
        .map(|(_, m)| m.producers_built.saturating_sub(1))
        .sum();
    let throughput = observed
        .first_delivery_at
        .map(|f| delivered as f64 / o.finished.duration_since(f).as_secs_f64().max(1e-3));
    let ms = |d: Option<Duration>| d.map_or("n/a".to_owned(), |d| format!("{} ms", d.as_millis()));
    println!("| dead-lettered | {dead} |");
    println!("| handed back at close | {} |", o.returned);
    println!(
        "| delivery rate, first to last delivery (publishing is paced at --rate) | {} |",
        throughput.map_or("n/a".to_owned(), |t| format!("{t:.0} events/s"))
    );
    println!(
        "| {} -> first delivery | {} |",
        if o.mock { "broker up" } else { "start" },
        ms(observed.first_delivery_after_up)
    );
    if o.mock {
        println!(
            "| broker back after the cut -> first delivery | {} |",
            ms(observed.first_delivery_after_cut)
        );
    }
    for (i, b) in observed.backlogs.iter().enumerate() {
        let when = if i == 0 {
            "at first broker-up"
        } else {
            "after the cut"
        };
        match b.drained_in {
            Some(d) => println!(
                "| backlog {when}: {} events, drained in | {} ms ({:.0} events/s) |",
                b.events,
                d.as_millis(),
                b.events as f64 / d.as_secs_f64().max(1e-3)
            ),
            None => println!("| backlog {when}: {} events, drained in | n/a |", b.events),
        }
    }
    println!(
        "| peak queue depth (all services) | {} |",
        observed.peak_queued
    );
    println!(
        "| link losses / connect attempts / producers rebuilt | {link_losses} / {reconnects} / {rebuilt} |"
    );
    println!(
        "| wall time | {:.1} s |",
        o.finished.duration_since(o.start).as_secs_f64()
    );
    println!();
}
