//! A leader timeline: a background thread reads the topic's metadata every
//! 200 ms and records each partition's leader whenever it changes.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use super::meta;

/// How often the watch reads the metadata.
const PERIOD: Duration = Duration::from_millis(200);

/// One entry of the timeline: `partition` was seen led by `leader` at `at`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LeaderChange {
    /// When the watch saw it.
    pub at: Instant,
    /// The partition.
    pub partition: i32,
    /// The new leader; `None` when the metadata said -1 (no leader).
    pub leader: Option<i32>,
}

/// Records leader changes of one topic until dropped.
///
/// The first reading of each partition is recorded too, so the timeline
/// starts with the leaders at [`LeaderWatch::start`]. The metadata comes
/// from whichever broker librdkafka asks (through the proxies); failed
/// reads (timeouts while brokers are down) are skipped.
pub struct LeaderWatch {
    changes: Arc<Mutex<Vec<LeaderChange>>>,
    stop: Arc<AtomicBool>,
}

impl std::fmt::Debug for LeaderWatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LeaderWatch").finish_non_exhaustive()
    }
}

impl LeaderWatch {
    /// Starts watching `topic` through `bootstrap`.
    pub fn start(bootstrap: String, topic: String) -> Self {
        let changes = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (out, done) = (changes.clone(), stop.clone());
        std::thread::spawn(move || watch(&bootstrap, &topic, &out, &done));
        Self { changes, stop }
    }

    /// The changes seen so far, oldest first.
    pub fn changes(&self) -> Vec<LeaderChange> {
        self.changes
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

impl Drop for LeaderWatch {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

fn watch(bootstrap: &str, topic: &str, out: &Mutex<Vec<LeaderChange>>, stop: &AtomicBool) {
    let Ok(client) = meta::client(bootstrap) else {
        return;
    };
    let mut last: BTreeMap<i32, Option<i32>> = BTreeMap::new();
    while !stop.load(Ordering::Relaxed) {
        let started = Instant::now();
        if let Ok(snapshot) = meta::read(&client, Some(topic), Duration::from_secs(1)) {
            let at = Instant::now();
            let mut out = out.lock().unwrap_or_else(PoisonError::into_inner);
            for (&partition, state) in &snapshot.partitions {
                if last.insert(partition, state.leader) != Some(state.leader) {
                    out.push(LeaderChange {
                        at,
                        partition,
                        leader: state.leader,
                    });
                }
            }
        }
        std::thread::sleep(PERIOD.saturating_sub(started.elapsed()));
    }
}
