#!/usr/bin/env bash
# Installs the system packages the deploy tests need on a Debian machine (CI, a dev box):
# an OpenSSH server and client (the loopback "Pi"), rsync (the transfer), make (both
# Makefiles), python3-venv (the "Pi" builds its venv) and systemd's analyzer (unit checks);
# for the emulated arm64 Pi (tests/test_pi_emulated.py, deploy/pi/): debootstrap (builds its
# Debian userland) and qemu-user-static (runs its arm64 programs through binfmt_misc, which
# deploy/pi registers itself, so binfmt-support is not needed); for the whole emulated Pi that
# boots (tests/test_pi_system.py, deploy/pi/system.py): qemu-system-arm (qemu-system-aarch64),
# qemu-utils (qemu-img, its copy-on-write disks) and e2fsprogs (mkfs.ext4 -d); mosquitto (the MQTT test's
# broker, with mosquitto_passwd), chromium + chromium-driver (the dashboard's browser test),
# openssl (the MQTT TLS test's certificates); for the overlay window's test (tests/test_window.py):
# xvfb (a real X server), xdotool (finds the window, presses q), imagemagick (`import` grabs its
# pixels) and libgl1, which the GUI OpenCV wheel links (xvfb and imagemagick also bring its other
# libraries: libxcb, libSM, GLib).
# Idempotent: apt-get update runs only when a package is missing, so a warm machine spends
# no time here. Needs root (CI runs as root).
set -euo pipefail

wanted=(openssh-server openssh-client rsync make python3-venv systemd debootstrap qemu-user-static
    qemu-system-arm qemu-utils e2fsprogs mosquitto chromium chromium-driver openssl xvfb xdotool imagemagick libgl1)

missing=()
for pkg in "${wanted[@]}"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done

if [ ${#missing[@]} -eq 0 ]; then
    echo "ci-system-deps: all present (${wanted[*]})"
    exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
    echo "ci-system-deps: error: need root to install: ${missing[*]}" >&2
    exit 1
fi

echo "ci-system-deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
# Without an init system the package scripts cannot start sshd as a service, which is what
# the test wants: it runs its own sshd on a free port.
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
echo "ci-system-deps: installed ${missing[*]}"
