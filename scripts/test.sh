#!/usr/bin/env bash
# README command 2: install everything, then run the default test suite (slow tests excluded;
# `scripts/test.sh -m slow` runs the MiniLM end-to-end checks).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install.sh
if [ $# -eq 0 ]; then set -- -m "not slow"; fi
exec .venv/bin/python -m pytest "$@"
