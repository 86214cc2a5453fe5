#!/bin/sh
# rootfs.sh SUITE OUT.tar.gz: the recipe of an emulated Raspberry Pi's userland.
#
# An arm64 Debian SUITE (bookworm = Raspberry Pi OS Bookworm's base, Python 3.11; trixie =
# Python 3.13) with what a Pi that `make deploy` targets has: python3 + venv + pip, an SSH
# server, rsync, make, and a `pi` user in the `video` group. arm64 programs run through
# qemu-user (binfmt_misc), so debootstrap needs no second stage by hand.
#
# deploy/pi/emulator.py runs this in private mount and PID namespaces, so whatever debootstrap
# mounts or starts inside the new root disappears with the namespaces, even on failure. The
# tarball is cached under a key that is the sha256 of this file: change the recipe, get a
# new rootfs. Keys, the pi user's authorized_keys and the CA bundle are added at each start,
# never baked in.
set -eu
suite=$1
out=$2
mirror=${PI_MIRROR:-http://deb.debian.org/debian}
packages=python3,python3-venv,python3-pip,openssh-server,rsync,make,procps,ca-certificates

work=$(mktemp -d "${TMPDIR:-/tmp}/fer-edge-rootfs.XXXXXX")
trap 'rm -rf "$work"' EXIT
root=$work/root

echo "rootfs: debootstrap $suite arm64 ($packages)"
if ! debootstrap --arch=arm64 --variant=minbase --include="$packages" \
        "$suite" "$root" "$mirror" > "$work/debootstrap.log" 2>&1; then
    tail -n 20 "$work/debootstrap.log" >&2
    [ -f "$root/debootstrap/debootstrap.log" ] && tail -n 20 "$root/debootstrap/debootstrap.log" >&2
    echo "rootfs: error: debootstrap $suite failed (see above)" >&2
    exit 1
fi

# The Pi's default user. '*' = no password but not locked: sshd (without PAM) refuses a
# locked account even for key logins.
chroot "$root" useradd --create-home --shell /bin/bash --groups video --uid 1000 pi
chroot "$root" usermod --password '*' pi
# Host keys are made at each start; none is shared between emulated Pis.
rm -f "$root"/etc/ssh/ssh_host_*
chroot "$root" apt-get clean
rm -rf "$root"/var/lib/apt/lists/* "$root"/var/cache/apt/*.bin "$root"/var/log/*.log
echo "$suite" > "$root/etc/fer-edge-pi-suite"

tar --numeric-owner --one-file-system -C "$root" -czf "$out.part" \
    --exclude=./dev/* --exclude=./proc/* --exclude=./sys/* --exclude=./run/* --exclude=./tmp/* .
mv -f "$out.part" "$out"
echo "rootfs: wrote $out ($(du -h "$out" | cut -f1))"
