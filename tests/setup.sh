#!/usr/bin/env bash
# Installs what the tests need besides Rust: the npm packages of the interop test
# (tests/interop) and of the browser test (tests/browser), Debian's Chromium for the
# latter, and moto's local S3-compatible server for the S3 blob-store tests
# (tests/setup-s3.sh). Run by the README's test command and by .ci/run; safe to run again.
set -euo pipefail
cd "$(dirname "$0")/.."

# tests/browser: playwright-core drives Chromium. For the SockJS test (run.mjs) the page is
# the npm DDP client ddp.js over sockjs-client, which run.mjs bundles with esbuild on each run
# (no build step); the web catalog's test (catalog.mjs) audits each page with axe-core.
echo "== npm packages (tests/interop: a third-party DDP client; tests/browser: playwright-core, ddp.js, sockjs-client, esbuild, axe-core)"
npm ci --prefix tests/interop --no-audit --no-fund
npm ci --prefix tests/browser --no-audit --no-fund

echo "== Chromium for the browser tests (Debian's package; browser downloads do not work offline)"
if [ -x /usr/bin/chromium ]; then
    /usr/bin/chromium --version
else
    sudo_if_needed=()
    if [ "$(id -u)" != 0 ]; then
        sudo_if_needed=(sudo)
    fi
    "${sudo_if_needed[@]}" apt-get update
    "${sudo_if_needed[@]}" apt-get install -y --no-install-recommends chromium
fi

echo "== moto_server, a local S3-compatible server for the S3 blob-store tests"
bash tests/setup-s3.sh
