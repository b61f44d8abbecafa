#!/bin/sh
# Install Debian's chromium for the report's browser tests (never a downloaded browser).
# Idempotent and quiet: does nothing when `chromium` is on PATH. Fails with one line if it cannot.
set -u

if command -v chromium >/dev/null 2>&1; then
    exit 0
fi
if ! command -v apt-get >/dev/null 2>&1; then
    echo "install-browser.sh: chromium is not on PATH and apt-get is missing; install chromium by hand" >&2
    exit 1
fi
if [ "$(id -u)" -eq 0 ]; then
    SUDO=""
elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
    SUDO="sudo -n"
else
    echo "install-browser.sh: chromium is not on PATH and installing it needs root (apt-get install chromium)" >&2
    exit 1
fi
log=$(mktemp "${TMPDIR:-/tmp}/install-browser.XXXXXX")
if ! { $SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq chromium; } >"$log" 2>&1; then
    echo "install-browser.sh: apt-get install chromium failed; see $log" >&2
    exit 1
fi
rm -f "$log"
if ! command -v chromium >/dev/null 2>&1; then
    echo "install-browser.sh: apt-get installed chromium but it is not on PATH" >&2
    exit 1
fi
