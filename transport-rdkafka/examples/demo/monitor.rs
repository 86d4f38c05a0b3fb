//! While the services publish: the scripted outages of the mock cluster,
//! the progress bar, and what the demo observes (backlogs and how fast they
//! drain, time to first delivery, peak queue depth), until everything
//! accepted was delivered.

use std::io::IsTerminal;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use robust_producer::State;
use tokio::task::JoinHandle;

use crate::broker::Broker;
use crate::services::{Running, SERVICES};

/// A backlog waiting when the broker came up, and how fast it drained.
pub(crate) struct Backlog {
    pub(crate) events: usize,
    up: Instant,
    pub(crate) drained_in: Option<Duration>,
}

/// Everything the monitor saw.
#[derive(Default)]
pub(crate) struct Observed {
    pub(crate) peak_queued: usize,
    pub(crate) backlogs: Vec<Backlog>,
    pub(crate) first_delivery_after_up: Option<Duration>,
    pub(crate) first_delivery_after_cut: Option<Duration>,
    pub(crate) first_delivery_at: Option<Instant>,
}

/// Accepted, delivered and queued, over every service.
fn totals(running: &[Running]) -> (u64, u64, usize) {
    running.iter().fold((0, 0, 0), |(a, d, q), r| {
        let s = r.producer.stats();
        (a + s.accepted, d + s.delivered, q + s.queued_records)
    })
}

/// Each service's producer state, for the progress line.
pub(crate) fn states(running: &[Running]) -> String {
    running
        .iter()
        .map(|r| format!("{}:{}", r.service.name, short(r.producer.state())))
        .collect::<Vec<_>>()
        .join(" ")
}

fn short(s: State) -> &'static str {
    match s {
        State::Disconnected => "down",
        State::Connecting => "conn",
        State::Connected => "up",
        State::Draining => "drain",
        _ => "closed",
    }
}

/// What the monitor watches.
pub(crate) struct Watched<'a> {
    pub(crate) broker: &'a Broker,
    pub(crate) running: &'a [Running],
    pub(crate) publishers: &'a [JoinHandle<u64>],
    /// When the producers started.
    pub(crate) start: Instant,
    /// How long the services publish.
    pub(crate) duration: Duration,
    /// Events per service per 10 ms tick, and ticks.
    pub(crate) per_tick: u64,
    pub(crate) ticks: u64,
}

/// The monitor's state between two looks.
struct Monitor<'a> {
    w: Watched<'a>,
    bar: ProgressBar,
    terminal: bool,
    observed: Observed,
    /// Outages scripted on the mock cluster: (fraction of the run, up).
    script: Vec<(f64, bool)>,
    next_step: usize,
    up_at: Option<Instant>,
    cut_recovered_at: Option<Instant>,
    delivered_at_up: u64,
    last_draw: Instant,
    publishers_done: bool,
    flush_started: Option<Instant>,
}

/// Watches until everything accepted was delivered (or the flush took over
/// 120 s); returns what it saw and when it finished.
pub(crate) async fn watch(w: Watched<'_>) -> (Observed, Instant) {
    let mut m = Monitor::new(w);
    loop {
        m.scripted_outage();
        let (accepted, delivered, queued) = totals(m.w.running);
        m.observe(delivered, queued);
        m.draw(delivered, queued);
        m.publishers_finished(accepted);
        if m.publishers_done
            && m.next_step >= m.script.len()
            && queued == 0
            && delivered >= accepted
        {
            break;
        }
        if m.flush_started
            .is_some_and(|f| f.elapsed() > Duration::from_secs(120))
        {
            m.say("flush did not finish within 120 s".to_owned());
            break;
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let finished = Instant::now();
    m.bar.finish_and_clear();
    (m.observed, finished)
}

impl<'a> Monitor<'a> {
    fn new(w: Watched<'a>) -> Self {
        let terminal = std::io::stdout().is_terminal();
        let expected = w.per_tick * w.ticks * SERVICES.len() as u64;
        let bar = if terminal {
            let b = ProgressBar::with_draw_target(Some(expected), ProgressDrawTarget::stdout());
            b.set_style(
                ProgressStyle::with_template(
                    "{spinner} {elapsed:>3} {bar:20.cyan/blue} {pos:>7}/{len} delivered {msg}",
                )
                .unwrap(),
            );
            b
        } else {
            ProgressBar::hidden()
        };
        let mock = w.broker.is_mock();
        let script = if mock {
            vec![(0.2, true), (0.5, false), (0.7, true)]
        } else {
            vec![]
        };
        let up_at = if mock { None } else { Some(w.start) };
        Self {
            w,
            bar,
            terminal,
            observed: Observed::default(),
            script,
            next_step: 0,
            up_at,
            cut_recovered_at: None,
            delivered_at_up: 0,
            last_draw: Instant::now() - Duration::from_secs(1),
            publishers_done: false,
            flush_started: None,
        }
    }

    /// Prints a line above the progress bar.
    fn say(&self, line: String) {
        if self.terminal {
            self.bar.println(line);
        } else {
            println!("{line}");
        }
    }

    fn elapsed(&self) -> f64 {
        self.w.start.elapsed().as_secs_f64()
    }

    /// Takes the script's next step (broker up or cut) once its time came.
    fn scripted_outage(&mut self) {
        let t = self.w.start.elapsed().as_secs_f64() / self.w.duration.as_secs_f64();
        let Some(&(at, up)) = self.script.get(self.next_step) else {
            return;
        };
        if t < at {
            return;
        }
        self.w.broker.set_up(up);
        let (_, delivered, queued) = totals(self.w.running);
        self.say(format!(
            "[{:>5.1}s] broker {}  (queued {queued}, delivered {delivered})",
            self.elapsed(),
            if up { "UP" } else { "CUT" }
        ));
        if up {
            self.observed.backlogs.push(Backlog {
                events: queued,
                up: Instant::now(),
                drained_in: None,
            });
            self.delivered_at_up = delivered;
            if self.up_at.is_none() {
                self.up_at = Some(Instant::now());
            } else {
                self.cut_recovered_at = Some(Instant::now());
            }
        }
        self.next_step += 1;
    }

    /// Peak queue depth, drained backlogs, first deliveries.
    fn observe(&mut self, delivered: u64, queued: usize) {
        let observed = &mut self.observed;
        observed.peak_queued = observed.peak_queued.max(queued);
        // Drained: back to what a few ticks of publishing leave queued.
        let steady = (self.w.per_tick * SERVICES.len() as u64 * 5) as usize;
        for b in &mut observed.backlogs {
            if b.drained_in.is_none() && queued <= steady.max(b.events / 50) {
                b.drained_in = Some(b.up.elapsed());
            }
        }
        if delivered > 0 && observed.first_delivery_at.is_none() {
            observed.first_delivery_at = Some(Instant::now());
            if let Some(up) = self.up_at {
                observed.first_delivery_after_up = Some(up.elapsed());
            }
        }
        if let Some(rec) = self.cut_recovered_at
            && observed.first_delivery_after_cut.is_none()
            && delivered > self.delivered_at_up
        {
            observed.first_delivery_after_cut = Some(rec.elapsed());
        }
    }

    /// Redraws the progress bar, at most every 100 ms.
    fn draw(&mut self, delivered: u64, queued: usize) {
        if self.last_draw.elapsed() >= Duration::from_millis(100) {
            self.last_draw = Instant::now();
            self.bar.set_position(delivered);
            self.bar
                .set_message(format!("queued {queued:>6} | {}", states(self.w.running)));
        }
    }

    /// Notes when every publisher finished: the flush starts.
    fn publishers_finished(&mut self, accepted: u64) {
        if !self.publishers_done && self.w.publishers.iter().all(|p| p.is_finished()) {
            self.publishers_done = true;
            self.flush_started = Some(Instant::now());
            self.say(format!(
                "[{:>5.1}s] publishing done: {accepted} events accepted; flushing",
                self.elapsed()
            ));
        }
    }
}
