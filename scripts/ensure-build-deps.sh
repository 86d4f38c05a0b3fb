#!/usr/bin/env bash
# System packages the workspace build needs: OpenSSL's headers and
# pkg-config, for robust-producer-rdkafka's `tls` feature (librdkafka linked
# to the system OpenSSL), which the integration tests enable and so every
# workspace build compiles. Installs Debian's libssl-dev and pkg-config with
# apt-get when missing; does nothing when they are there. Exits non-zero
# with what to install when it cannot.
set -euo pipefail

say() { echo "[build-deps] $*"; }

missing=()
command -v pkg-config >/dev/null 2>&1 || missing+=(pkg-config)
if ! { pkg-config --exists openssl 2>/dev/null || dpkg -s libssl-dev >/dev/null 2>&1; }; then
    missing+=(libssl-dev)
fi
if ((${#missing[@]} == 0)); then
    say "OpenSSL headers and pkg-config present (OpenSSL $(pkg-config --modversion openssl 2>/dev/null || echo '?'))"
    exit 0
fi

if ! command -v apt-get >/dev/null 2>&1; then
    echo "[build-deps] ERROR: missing ${missing[*]} and no apt-get: install OpenSSL's development headers and pkg-config (or build robust-producer-rdkafka with tls-vendored instead of tls)" >&2
    exit 1
fi
sudo=()
if [[ "$(id -u)" != 0 ]]; then
    sudo=(sudo)
fi
say "installing ${missing[*]}"
"${sudo[@]}" apt-get update -qq
DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}"
say "installed ${missing[*]}"
