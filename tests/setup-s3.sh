#!/usr/bin/env bash
# Installs the local S3-compatible server the S3 tests run against: moto's `moto_server`
# (PyPI package moto[server]). Idempotent: does nothing when it is already installed.
# Run by tests/setup.sh (the README's test command and .ci/run).
set -euo pipefail

if command -v moto_server >/dev/null 2>&1; then
    exit 0
fi
if ! command -v python3 >/dev/null 2>&1; then
    echo "python3 is missing: install it (e.g. apt-get install python3 python3-pip), then rerun $0" >&2
    exit 1
fi
python3 -m pip install --quiet 'moto[server]>=5,<6'
hash -r
if ! command -v moto_server >/dev/null 2>&1; then
    echo "moto_server was installed but is not on PATH; add Python's script directory to PATH" >&2
    exit 1
fi
