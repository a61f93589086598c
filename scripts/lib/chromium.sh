#!/usr/bin/env bash
# Sourced helper: makes sure headless Chromium and chromedriver are there for
# the dashboard's browser test (tests/tests/browser.rs).
#
#   source scripts/lib/chromium.sh
#   jobq_chromium_up        # installs Debian's chromium + chromium-driver if missing
#
# Uses $CHROMIUM and $CHROMEDRIVER when set (the test reads them too).
# Otherwise looks for `chromium` and `chromedriver` on PATH and, when either
# is missing, installs both packages with apt-get as root; not root, it says
# what to install and fails.
set -euo pipefail

_jobq_chromium_log() { printf 'jobq: %s\n' "$*" >&2; }

jobq_chromium_up() {
  local browser=${CHROMIUM:-chromium} driver=${CHROMEDRIVER:-chromedriver}
  if command -v "$browser" >/dev/null 2>&1 && command -v "$driver" >/dev/null 2>&1; then
    return 0
  fi
  if [[ $EUID -ne 0 ]] || ! command -v apt-get >/dev/null 2>&1; then
    _jobq_chromium_log "the dashboard's browser test needs Chromium and chromedriver: install Debian's 'chromium' and 'chromium-driver' packages, or set CHROMIUM and CHROMEDRIVER."
    return 1
  fi
  _jobq_chromium_log "Chromium or chromedriver not found; installing chromium and chromium-driver with apt-get..."
  # Quiet unless it fails: apt output would drown the test output.
  local log
  log=$(mktemp) || return 1
  if ! { apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y chromium chromium-driver; } >"$log" 2>&1; then
    tail -n 30 "$log" >&2
    rm -f "$log"
    _jobq_chromium_log "apt-get install chromium chromium-driver failed (see above)."
    return 1
  fi
  rm -f "$log"
}
