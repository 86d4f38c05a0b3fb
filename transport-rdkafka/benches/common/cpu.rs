//! CPU time of this process and of its threads, read from `/proc` (Linux;
//! zero elsewhere). Resolution: one clock tick (10 ms).

use std::collections::BTreeMap;
use std::time::Duration;

/// CPU time (user + system) of the whole process, all threads.
pub(crate) fn process_cpu() -> Duration {
    std::fs::read_to_string("/proc/self/stat")
        .ok()
        .and_then(|stat| parse_stat(&stat).map(|(_, cpu)| cpu))
        .unwrap_or_default()
}

/// CPU time of each live thread, by thread id: (name, CPU time).
pub(crate) fn thread_cpu() -> BTreeMap<String, (String, Duration)> {
    let mut by_tid = BTreeMap::new();
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return by_tid;
    };
    for task in tasks.flatten() {
        let Ok(stat) = std::fs::read_to_string(task.path().join("stat")) else {
            continue;
        };
        if let Some((name, cpu)) = parse_stat(&stat) {
            let tid = task.file_name().to_string_lossy().into_owned();
            by_tid.insert(tid, (name.to_owned(), cpu));
        }
    }
    by_tid
}

/// The command name and CPU time (user + system) in a `/proc` `stat` line.
pub(crate) fn parse_stat(stat: &str) -> Option<(&str, Duration)> {
    let (head, rest) = stat.rsplit_once(')')?;
    let (_, name) = head.split_once('(')?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks: u64 = [11, 12]
        .iter()
        .filter_map(|&i| fields.get(i).and_then(|v| v.parse::<u64>().ok()))
        .sum();
    // USER_HZ is 100 on every Linux the project runs on.
    Some((name, Duration::from_millis(ticks * 10)))
}
