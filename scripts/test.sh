#!/usr/bin/env bash
# README command 2: install everything, then run the default test suite (slow tests excluded;
# `scripts/test.sh -m slow` runs the MiniLM end-to-end checks).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-system.sh   # Debian packages only the tests use: sshd test host, QEMU, debootstrap, Chromium
scripts/install.sh
# The emulated ARM64 device's root is built once per machine (~4 min, cached in ~/.cache/edgekit);
# with it in place the QEMU tests are part of the default suite.
if [ "$(id -u)" = 0 ] && command -v debootstrap >/dev/null; then
  "${EDGEKIT_VENV:-.venv}"/bin/python -c "from edgekit.devices.qemu import build_rootfs; build_rootfs(progress=lambda m: print('  arm64 root:', m, flush=True))" \
    || echo "note: could not build the emulated ARM64 root; its tests are skipped as slow" >&2
fi
if [ $# -eq 0 ]; then set -- -m "not slow"; fi
exec "${EDGEKIT_VENV:-.venv}"/bin/python -m pytest "$@"
