#!/usr/bin/env bash
# Debian packages the device tests use: a real sshd as SSH test host (in a network namespace),
# and QEMU user-mode emulation + debootstrap for the emulated ARM64 device. Needs root and apt;
# elsewhere it says what is missing and the tests that need it skip with that reason.
set -euo pipefail
PKGS=(openssh-server openssh-client iproute2 qemu-user-static binfmt-support debootstrap chromium)
missing=()
for p in "${PKGS[@]}"; do dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p"); done
binfmt() {  # QEMU user-mode emulation of aarch64 binaries (the emulated ARM64 device)
  [ "$(id -u)" = 0 ] || return 0
  mountpoint -q /proc/sys/fs/binfmt_misc 2>/dev/null || mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc 2>/dev/null || true
  command -v update-binfmts >/dev/null && update-binfmts --enable qemu-aarch64 2>/dev/null || true
}
if [ ${#missing[@]} -eq 0 ]; then binfmt; exit 0; fi
if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null; then
  echo "note: Debian packages missing (need root + apt): ${missing[*]}" >&2
  exit 0
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
echo "installed Debian packages: ${missing[*]}"
binfmt
