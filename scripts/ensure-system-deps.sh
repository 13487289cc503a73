#!/bin/sh
# Make sure the system tools the test suite needs are present (idempotent).
#
#   docker-compose  tests/e2e/test_compose.py validates docker-compose.yml (`docker-compose config -q`)
#   prometheus      tests/integration/test_dashboard.py scrapes a worker and runs the dashboard's queries
#   chromium        tests/integration/test_status_page.py loads the status page in headless Chromium
#
# What is missing is installed from Debian packages with apt-get when running as root on a
# Debian/Ubuntu system; otherwise the script fails and says what to install.
set -eu

log() { printf 'ensure-system-deps: %s\n' "$*"; }

# command:package pairs
WANTED="docker-compose:docker-compose prometheus:prometheus chromium:chromium"

missing=""
for pair in $WANTED; do
    cmd=${pair%%:*}
    pkg=${pair#*:}
    if command -v "$cmd" >/dev/null 2>&1; then
        log "$cmd already installed ($(command -v "$cmd"))"
    else
        missing="$missing $pkg"
    fi
done
[ -z "$missing" ] && exit 0

if [ "$(id -u)" != "0" ]; then
    log "missing:$missing; this script is not running as root, so it cannot install them."
    log "Install them yourself, e.g.: sudo apt-get install -y$missing, then re-run."
    exit 1
fi
if ! command -v apt-get >/dev/null 2>&1; then
    log "missing:$missing; apt-get is not available on this system."
    log "Install them with your system's package manager, then re-run."
    exit 1
fi

log "installing Debian packages:$missing"
export DEBIAN_FRONTEND=noninteractive
if ! apt-get update -qq >/dev/null; then
    log "apt-get update failed (no network or broken sources?); cannot install:$missing"
    exit 1
fi
# shellcheck disable=SC2086 # the package list is meant to be split
if ! apt-get install -y -qq --no-install-recommends $missing >/dev/null; then
    log "apt-get install$missing failed; install them by hand and re-run."
    exit 1
fi

for pair in $WANTED; do
    cmd=${pair%%:*}
    if ! command -v "$cmd" >/dev/null 2>&1; then
        log "apt-get reported success but $cmd is still not on PATH."
        exit 1
    fi
done
log "installed:$missing"
