#!/bin/sh
# Headless Chromium for tests/report_chromium.rs (opens report.html, counts
# the schedule's bars, collects console errors). Called from tests/run-all.sh.
set -eu
if ! command -v chromium >/dev/null 2>&1; then
    apt-get update
    DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends chromium
fi
