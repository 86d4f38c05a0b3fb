//! Throughput of the robust producer against raw rdkafka, in one run, on the
//! same librdkafka mock cluster with the same settings: 100-byte payloads,
//! a key and a 36-byte `event_id` header per record, `acks=all`,
//! idempotence on, `linger.ms=5`. Counted: records the broker acknowledged.
//!
//! ```text
//! cargo bench -p robust-producer-rdkafka --bench throughput
//! cargo bench -p robust-producer-rdkafka --bench throughput -- --records 1000000 --backlog 1000000 --rounds 3
//! ```
//!
//! Variants, interleaved over `--rounds` rounds (medians reported):
//! * `raw`: rdkafka `BaseProducer`, `send` in a loop, `poll` inline (every
//!   1024 sends, and when the queue is full), acks counted in the delivery
//!   callback.
//! * `ours`: `Producer::send(...).await` per record over the rdkafka
//!   transport on a current-thread tokio runtime (the application and the
//!   driver share one thread; the sender yields every 256 records), then
//!   `flush`.
//! * `ours-mt`: the same from a task on a multi-thread runtime (2 workers).
//! * `future`: rdkafka `FutureProducer`, `send_result` pipelined, a window of
//!   delivery futures awaited in order.
//!
//! With `--metrics`, the producers publish their metrics to a Prometheus
//! recorder and librdkafka's statistics come every second, as in a
//! monitored service (compare runs with and without it for the cost).
//!
//! Each is reported as msgs/s (wall clock) and as CPU time of the whole
//! process (all threads, the mock broker's included) per acknowledged
//! record, which other load on the machine disturbs less.
//!
//! Then the backlog, `--backlog-rounds` times per runtime (medians
//! reported; a single drain swung by a factor of 1.5 between runs of the
//! same code): `--backlog` records accepted while
//! every broker is down, then the broker comes up. Reported: the accept
//! rate, broker-up to first acknowledgement (the core's reconnect backoff and
//! the transport's probe), the drain rate from the first to the last
//! acknowledgement as a ratio of raw BaseProducer's steady rate, and the
//! longest wait of a 1 ms timer task on the same executor meanwhile.
//!
//! Against a real broker: `--bootstrap host:port`, and `--container NAME`
//! (its Docker container, stopped and started for the backlog; without it
//! the backlog is skipped). `scripts/bench-real-broker.sh` starts one.
//!
//! Options: `--records N`, `--backlog N`, `--backlog-rounds N`, `--rounds N`, `--partitions N`,
//! `--max-in-flight N` (the core's), `--queue N` (the core's bound on queued
//! records), `--variants raw,ours,ours-mt,future`, `--threads` (CPU per
//! record of each thread, in each round's line).
//!
//! Every variant first sends one record and waits for its acknowledgement,
//! outside the measured time: an idempotent producer cannot send before it
//! has a producer id, and librdkafka retries that request after 500 ms when
//! its first attempt finds no broker connection up yet. Timed from the
//! metadata probe, a round that hit the retry measured about half its true
//! rate (this made earlier figures bimodal, raw and ours alike).
//!
//! Modules: [`args`] (the command line), [`cluster`] (mock or real
//! broker), [`variants`] (one function per variant, and what a run
//! measures), [`backlog`] (the backlog run).

#![expect(
    clippy::print_stdout,
    clippy::unwrap_used,
    reason = "a benchmark: it prints its figures, and any failure ends it"
)]

mod args;
mod backlog;
mod cluster;
#[path = "../common/cpu.rs"]
mod cpu;
mod variants;

use rdkafka::mocking::MockCluster;
use tokio::runtime::Runtime;

use args::Args;
use backlog::robust_backlog;
use cluster::Cluster;
use variants::{Data, PAYLOAD, Run, future_producer, raw_base_producer, robust_producer};

/// The variants: their `--variants` key and their name in the table. `raw`
/// comes first: the others are compared with it.
const NAMES: [(&str, &str); 4] = [
    ("raw", "raw rdkafka BaseProducer"),
    ("ours", "robust producer, current-thread tokio"),
    ("ours-mt", "robust producer, multi-thread tokio (2 workers)"),
    ("future", "rdkafka FutureProducer, pipelined"),
];

fn median(mut v: Vec<f64>) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// The runs of one variant.
#[derive(Default)]
struct Series {
    rates: Vec<f64>,
    cpu_us: Vec<f64>,
}

impl Series {
    fn push(&mut self, run: &Run) {
        if run.acked > 0 {
            self.rates.push(run.rate());
            self.cpu_us.push(run.cpu_us());
        }
    }
    fn rate(&self) -> f64 {
        median(self.rates.clone())
    }
    fn cpu(&self) -> f64 {
        median(self.cpu_us.clone())
    }
}

/// What every step of the bench shares.
struct Bench {
    args: Args,
    cluster: Cluster,
    bootstrap: String,
    data: Data,
    /// The current-thread runtime of `ours` and of one backlog series.
    current: Runtime,
    /// The multi-thread runtime (2 workers) of the others.
    rt: Runtime,
}

fn main() {
    let args = args::args();
    if args.metrics {
        metrics_exporter_prometheus::PrometheusBuilder::new()
            .install_recorder()
            .unwrap();
    }
    let cluster = match &args.bootstrap {
        None => Cluster::Mock(MockCluster::new(1).unwrap()),
        Some(b) => Cluster::Real {
            bootstrap: b.clone(),
            container: args.container.clone(),
        },
    };
    let bench = Bench {
        bootstrap: cluster.bootstrap(),
        cluster,
        data: Data::new(),
        current: tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap(),
        rt: tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap(),
        args,
    };
    let args = &bench.args;
    println!(
        "{}, {} partitions; {} records of {PAYLOAD} B per run, {} rounds; \
         acks=all, idempotence, linger.ms=5; core max_in_flight {}; metrics {}",
        bench.cluster.describe(),
        args.partitions,
        args.records,
        args.rounds,
        args.max_in_flight,
        if args.metrics {
            "on (Prometheus recorder, statistics every 1 s)"
        } else {
            "off"
        }
    );
    let mut series: Vec<Series> = NAMES.iter().map(|_| Series::default()).collect();
    for round in 0..args.rounds {
        bench.round(round, &mut series);
    }
    let raw_rate = series[0].rate();
    bench.table(&series, raw_rate);
    if args.backlog > 0 && !bench.cluster.can_go_down() {
        println!();
        println!("backlog skipped: a real broker needs --container NAME to be stopped and started");
    }
    if args.backlog > 0 && bench.cluster.can_go_down() {
        for (name, runtime) in [
            ("multi-thread", &bench.rt),
            ("current-thread", &bench.current),
        ] {
            bench.backlogs(name, runtime, raw_rate);
        }
    }
}

impl Bench {
    fn wanted(&self, variant: &str) -> bool {
        self.args.variants.split(',').any(|w| w == variant)
    }

    /// One round: every wanted variant once, on a topic of its own; prints
    /// the round's line.
    fn round(&self, round: usize, series: &mut [Series]) {
        let args = &self.args;
        let mut line = format!("round {round}:");
        for (i, (key, _)) in NAMES.iter().enumerate() {
            if !self.wanted(key) {
                continue;
            }
            let topic = format!("bench-{key}-{round}-{}", std::process::id());
            self.cluster.create_topic(&self.rt, &topic, args.partitions);
            let run = self.run(key, topic);
            line.push_str(&format!(
                "  {key} {:.0}/s {:.2}us",
                run.rate(),
                run.cpu_us()
            ));
            if args.threads {
                line.push_str(&format!(" ({})", run.threads));
            }
            series[i].push(&run);
        }
        println!("{line}");
    }

    /// Runs variant `key` once, sending to `topic`.
    fn run(&self, key: &str, topic: String) -> Run {
        let (args, bootstrap, data) = (&self.args, &self.bootstrap, &self.data);
        match key {
            "raw" => raw_base_producer(bootstrap, &topic, args.records, data),
            "ours" => {
                self.current
                    .block_on(robust_producer(args, bootstrap, &topic, args.records, data))
            }
            "ours-mt" => {
                let (a, b, t, d) = (args.clone(), bootstrap.clone(), topic, data.clone());
                self.rt.block_on(async move {
                    tokio::spawn(async move { robust_producer(&a, &b, &t, a.records, &d).await })
                        .await
                        .unwrap()
                })
            }
            _ => self
                .rt
                .block_on(future_producer(bootstrap, &topic, args.records, data)),
        }
    }

    /// The table of medians, each variant compared with raw BaseProducer.
    fn table(&self, series: &[Series], raw_rate: f64) {
        let raw_cpu = series[0].cpu();
        println!();
        println!(
            "| variant | msgs/s (median) | ratio to raw BaseProducer | CPU us per record (median, whole process) | raw CPU / this CPU |"
        );
        println!("|---|---:|---:|---:|---:|");
        for ((key, name), s) in NAMES.iter().zip(series) {
            if !self.wanted(key) || s.rates.is_empty() {
                continue;
            }
            println!(
                "| {name} | {:.0} | {:.2} | {:.2} | {:.2} |",
                s.rate(),
                s.rate() / raw_rate,
                s.cpu(),
                raw_cpu / s.cpu()
            );
        }
    }

    /// `--backlog-rounds` backlog runs on `runtime`, each line and the
    /// median drain rate compared with raw BaseProducer's steady rate.
    fn backlogs(&self, name: &str, runtime: &Runtime, raw_rate: f64) {
        let args = &self.args;
        println!();
        println!(
            "backlog of {} records accepted while the broker was down ({name} tokio), {} times:",
            args.backlog, args.backlog_rounds
        );
        let mut drains = Vec::new();
        for round in 0..args.backlog_rounds {
            let topic = format!("bench-backlog-{name}-{round}-{}", std::process::id());
            self.cluster.create_topic(&self.rt, &topic, args.partitions);
            let b = runtime.block_on(robust_backlog(args, &self.cluster, &topic, &self.data));
            println!(
                "  {round}: accepted at {:.0}/s; broker up -> first ack {:.0?}; \
                 drain (first to last ack) {:.0}/s = {:.2} of raw BaseProducer steady, \
                 {:.2} us CPU per record; broker up -> all acked {:.0?} = {:.2} of raw; \
                 longest wait of a 1 ms timer task on the same executor {:.1?}",
                b.accept_rate,
                b.first_delivery,
                b.drain.rate(),
                b.drain.rate() / raw_rate,
                b.drain.cpu_us(),
                b.total,
                args.backlog as f64 / b.total.as_secs_f64() / raw_rate,
                b.worst_stall
            );
            drains.push(b.drain.rate());
        }
        let drain = median(drains);
        println!(
            "  drain, median: {drain:.0}/s = {:.2} of raw BaseProducer steady",
            drain / raw_rate
        );
    }
}
