//! What the real-Kafka tests need, and what happens when it is missing.
//!
//! `scripts/test-all.sh` runs `tests/kafka-image/prepare.sh` first, which
//! installs and starts a Docker engine and builds the Kafka image. When
//! either is missing anyway, the tests fail with a message naming what is
//! missing. A developer may skip the suite locally with
//! `ROBUST_PRODUCER_SKIP_KAFKA=1`; under `CI=true` that variable is ignored:
//! CI never skips silently.

use std::process::Command;
use std::sync::OnceLock;

/// Set to `1` to skip the real-Kafka tests locally (ignored when `CI=true`).
pub const SKIP_VAR: &str = "ROBUST_PRODUCER_SKIP_KAFKA";

fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true" || v == "1")
}

/// True when the developer asked to skip and this is not CI; says so on
/// standard error (the test runner shows it; a skip is never silent).
#[expect(
    clippy::print_stderr,
    reason = "a skip is said on standard error, never silent"
)]
pub fn skip() -> bool {
    let asked = std::env::var(SKIP_VAR).is_ok_and(|v| v == "1");
    if asked && in_ci() {
        eprintln!("{SKIP_VAR}=1 is ignored under CI=true: the real-Kafka suite always runs in CI");
        return false;
    }
    if asked {
        eprintln!("SKIPPED (real Kafka): {SKIP_VAR}=1");
    }
    asked
}

/// Panics with what is missing unless a Docker engine answers and the
/// Kafka image exists. Checked once per test process.
pub fn require_kafka() {
    static CHECK: OnceLock<Result<(), String>> = OnceLock::new();
    if let Err(missing) = CHECK.get_or_init(check) {
        panic!(
            "real-Kafka test prerequisites missing: {missing}\n\
             run `bash tests/kafka-image/prepare.sh` (scripts/test-all.sh does), \
             or set {SKIP_VAR}=1 to skip locally (not honoured under CI=true)"
        );
    }
}

fn check() -> Result<(), String> {
    let docker = Command::new("docker").arg("info").output();
    match docker {
        Err(e) => return Err(format!("the docker CLI cannot run ({e})")),
        Ok(out) if !out.status.success() => {
            return Err(format!(
                "no Docker engine answers: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
        Ok(_) => {}
    }
    let image =
        std::env::var("KAFKA_IMAGE").unwrap_or_else(|_| crate::kafka::DEFAULT_IMAGE.to_owned());
    let inspect = Command::new("docker")
        .args(["image", "inspect", "--format", "{{.Id}}", &image])
        .output()
        .map_err(|e| format!("docker image inspect failed to run ({e})"))?;
    if !inspect.status.success() {
        return Err(format!(
            "the Kafka image {image} is not built (KAFKA_IMAGE overrides the name)"
        ));
    }
    Ok(())
}
