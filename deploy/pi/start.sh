#!/bin/sh
# start.sh ROOT HOSTNAME CPUINFO CPU: the emulated Pi's "boot", run by deploy/pi/emulator.py inside new
# mount, PID and UTS namespaces. Everything mounted here lives only in that mount namespace,
# and every process started below lives in that PID namespace, whose init is the sshd exec'd
# at the end: when it stops, the kernel ends the rest and drops the mounts. Nothing leaks.
set -eu
R=$1
mount -t proc proc "$R/proc"
# The Pi's /proc/cpuinfo instead of the x86 one qemu 7.2 passes through (see emulator.py).
mount --bind "$3" "$R/proc/cpuinfo"
mount -t sysfs -o ro sysfs "$R/sys"
# A private /dev with only the usual nodes (bound from the host) and its own pty instance.
mount -t tmpfs -o mode=755,nosuid tmpfs "$R/dev"
for d in null zero full random urandom tty; do
    : > "$R/dev/$d"
    mount --bind "/dev/$d" "$R/dev/$d"
done
mkdir "$R/dev/pts" "$R/dev/shm"
mount -t devpts -o newinstance,ptmxmode=0666,mode=0620,gid=5 devpts "$R/dev/pts"
ln -s pts/ptmx "$R/dev/ptmx"
ln -s /proc/self/fd "$R/dev/fd"
mount -t tmpfs -o mode=1777,nosuid,nodev tmpfs "$R/dev/shm"
mount -t tmpfs -o mode=755,nosuid,nodev tmpfs "$R/run"
mkdir -m 755 "$R/run/sshd"
hostname "$2"
# The Pi's own arm64 sshd, run by qemu-user through binfmt_misc as the Pi's CPU model; -D
# keeps it PID 1 here.
export QEMU_CPU="$4"
exec chroot "$R" /usr/sbin/sshd -D -e -f /etc/ssh/fer-edge-sshd_config
