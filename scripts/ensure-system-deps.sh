#!/bin/sh
# Make sure the system tools the test suite needs are present (idempotent).
#
# Today that is `docker-compose`, used by tests/e2e/test_compose.py to validate docker-compose.yml.
# If it is missing and we are root on a Debian/Ubuntu system, install Debian's `docker-compose`
# package; otherwise fail and say what to install.
set -eu

log() { printf 'ensure-system-deps: %s\n' "$*"; }

if command -v docker-compose >/dev/null 2>&1; then
    log "docker-compose already installed: $(docker-compose version --short 2>/dev/null || echo '?') ($(command -v docker-compose))"
    exit 0
fi

if [ "$(id -u)" != "0" ]; then
    log "docker-compose is not on PATH and this script is not running as root, so it cannot install it."
    log "Install it yourself, e.g.: sudo apt-get install -y docker-compose  (or: pip install docker-compose,"
    log "or Docker's compose plugin plus a 'docker-compose' wrapper), then re-run."
    exit 1
fi

if ! command -v apt-get >/dev/null 2>&1; then
    log "docker-compose is not on PATH and apt-get is not available on this system."
    log "Install docker-compose with your system's package manager, then re-run."
    exit 1
fi

log "docker-compose not found; installing Debian package 'docker-compose' with apt-get"
export DEBIAN_FRONTEND=noninteractive
if ! apt-get update -qq >/dev/null; then
    log "apt-get update failed (no network or broken sources?); cannot install docker-compose."
    exit 1
fi
if ! apt-get install -y -qq --no-install-recommends docker-compose >/dev/null; then
    log "apt-get install docker-compose failed; install it by hand and re-run."
    exit 1
fi

if ! command -v docker-compose >/dev/null 2>&1; then
    log "apt-get reported success but docker-compose is still not on PATH."
    exit 1
fi
log "installed docker-compose $(docker-compose version --short 2>/dev/null || echo '?') ($(command -v docker-compose))"
