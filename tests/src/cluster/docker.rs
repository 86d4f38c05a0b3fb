//! The `docker` CLI for what testcontainers does not do: networks (create,
//! connect, disconnect, remove), `kill`, logs since an instant, state.
//!
//! Every network and container of the harness carries [`LABEL`] (the run's
//! name) and [`PID_LABEL`] (the test process); a later start removes those
//! whose process is gone.

use std::process::Command;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::kafka::Error;

/// Label on every container and network of a cluster; its value is the
/// run's name.
pub(crate) const LABEL: &str = "robust-producer.cluster";

/// Label holding the id of the process that owns the cluster.
pub(crate) const PID_LABEL: &str = "robust-producer.cluster.pid";

/// Runs `docker args...` and returns its standard output, or an error with
/// its standard error.
pub(crate) fn run(args: &[&str]) -> Result<String, Error> {
    let out = Command::new("docker")
        .args(args)
        .output()
        .map_err(|e| format!("docker {args:?} failed to run: {e}"))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(format!(
            "docker {} failed ({}): {}{}",
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim(),
            String::from_utf8_lossy(&out.stdout).trim(),
        )
        .into())
    }
}

/// [`run`] off the async executor.
pub(crate) async fn run_async(args: Vec<String>) -> Result<String, Error> {
    tokio::task::spawn_blocking(move || {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        run(&args)
    })
    .await?
}

fn owner_alive(pid: &str) -> bool {
    let pid = pid.trim();
    pid == std::process::id().to_string()
        || (!pid.is_empty() && std::path::Path::new("/proc").join(pid).exists())
}

/// Removes the containers, then the networks, of earlier runs whose test
/// process is gone (a run that crashed or was killed before its drop).
/// Clusters of live processes (another test binary running now) are kept.
pub(crate) fn remove_leftovers() -> Result<(), Error> {
    let filter = format!("label={LABEL}");
    let format = format!("{{{{.ID}}}} {{{{.Label \"{PID_LABEL}\"}}}}");
    let stale = |listing: String| -> Vec<String> {
        listing
            .lines()
            .filter_map(|line| {
                let (id, pid) = line.split_once(' ').unwrap_or((line, ""));
                (!id.is_empty() && !owner_alive(pid)).then(|| id.to_owned())
            })
            .collect()
    };
    let containers = stale(run(&[
        "ps", "-a", "--filter", &filter, "--format", &format,
    ])?);
    if !containers.is_empty() {
        let mut args = vec!["rm", "-f", "-v"];
        args.extend(containers.iter().map(String::as_str));
        run(&args)?;
    }
    let networks = stale(run(&[
        "network", "ls", "--filter", &filter, "--format", &format,
    ])?);
    for network in networks {
        run(&["network", "rm", &network])?;
    }
    Ok(())
}

/// The cluster's Docker network: `--internal`, so it never carries a
/// published port (those stay on the default bridge). Removed on drop.
pub(crate) struct Network {
    name: String,
}

impl Network {
    /// Creates the network `name`, labelled for this run and process.
    pub(crate) fn create(name: &str) -> Result<Self, Error> {
        let run_label = format!("{LABEL}={name}");
        let pid_label = format!("{PID_LABEL}={}", std::process::id());
        run(&[
            "network",
            "create",
            "--internal",
            "--label",
            &run_label,
            "--label",
            &pid_label,
            name,
        ])?;
        Ok(Self {
            name: name.to_owned(),
        })
    }

    /// Its name.
    pub(crate) fn name(&self) -> &str {
        &self.name
    }
}

impl Drop for Network {
    fn drop(&mut self) {
        // Containers are removed first (they are dropped before the network);
        // a removal racing the last endpoint's release is retried.
        let deadline = Instant::now() + Duration::from_secs(10);
        while run(&["network", "rm", &self.name]).is_err() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

/// Seconds since the epoch, with a fraction, as `docker logs --since` takes.
pub(crate) fn now_for_since() -> String {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    format!("{}.{:09}", now.as_secs(), now.subsec_nanos())
}

/// The container's log (standard output and error) since `since`.
pub(crate) fn logs_since(container: &str, since: &str) -> Result<String, Error> {
    let out = Command::new("docker")
        .args(["logs", "--since", since, container])
        .output()
        .map_err(|e| format!("docker logs failed to run: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "docker logs {container} failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        )
        .into());
    }
    let mut text = String::from_utf8_lossy(&out.stdout).into_owned();
    text.push_str(&String::from_utf8_lossy(&out.stderr));
    Ok(text)
}

/// The container's state: `running`, `paused`, `exited`, ...
pub(crate) fn status(container: &str) -> Result<String, Error> {
    Ok(
        run(&["inspect", "--format", "{{.State.Status}}", container])?
            .trim()
            .to_owned(),
    )
}
