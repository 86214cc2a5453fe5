#!/bin/sh
# image.sh ROOTFS.tar.gz OUT_DIR: the recipe of a whole emulated Raspberry Pi that boots.
#
# Starts from the emulated Pi's userland (rootfs.sh's tarball: arm64 Debian, python3, sshd,
# rsync, make, user pi) and adds what a booting Pi OS has: Debian's arm64 kernel and
# initramfs, systemd as PID 1 with logind (user managers, linger), journald with persistent
# storage, systemd-networkd (DHCP on the first Ethernet), and a one-shot unit that reads
# this instance's seed disk (LABEL=FERSEED: host keys, pi's authorized_keys, hostname, CA
# bundle) before sshd starts, so no key is baked into the image. Writes OUT_DIR/disk.img (raw
# ext4, sparse), OUT_DIR/vmlinuz and OUT_DIR/initrd.img; deploy/pi/system.py boots them with
# qemu-system-aarch64 -kernel/-initrd. Run by system.py in private mount and PID namespaces,
# so the chroot's mounts and any daemon a package starts die with them.
set -eu
tarball=$1
out=$2
size=${PI_IMAGE_SIZE:-6G}
packages="linux-image-arm64 systemd systemd-sysv dbus libpam-systemd udev kmod iproute2 \
e2fsprogs sudo less nano"

work=$(mktemp -d "${TMPDIR:-/var/tmp}/fer-edge-image.XXXXXX")
trap 'rm -rf "$work"' EXIT
root=$work/root
mkdir "$root"
tar --numeric-owner -xpzf "$tarball" -C "$root"

mount -t proc proc "$root/proc"
mount -t sysfs -o ro sysfs "$root/sys"
mount --bind /dev "$root/dev"
cp /etc/resolv.conf "$root/etc/resolv.conf"
# No package may start a daemon in the chroot.
printf '#!/bin/sh\nexit 101\n' > "$root/usr/sbin/policy-rc.d"
chmod 755 "$root/usr/sbin/policy-rc.d"
if [ -n "${SSL_CERT_FILE:-}" ] && [ -f "$SSL_CERT_FILE" ]; then  # a TLS proxy's CA, if any
    cp "$SSL_CERT_FILE" "$root/etc/ssl/certs/ca-certificates.crt"
fi

# A small initramfs: QEMU's virtio disk and network drivers only, instead of every module
# (MODULES=most takes minutes under qemu-user and slows each boot). A hook, not the
# initramfs-tools conffiles, so the package's own files stay as shipped.
mkdir -p "$root/etc/initramfs-tools/conf.d" "$root/etc/initramfs-tools/hooks"
echo "MODULES=list" > "$root/etc/initramfs-tools/conf.d/fer-pi.conf"
cat > "$root/etc/initramfs-tools/hooks/fer-pi" <<'EOF'
#!/bin/sh
[ "${1:-}" = prereqs ] && exit 0
. /usr/share/initramfs-tools/hook-functions
manual_add_modules virtio_pci virtio_blk virtio_net virtio_rng ext4 crc32c_generic
EOF
chmod 755 "$root/etc/initramfs-tools/hooks/fer-pi"

echo "image: apt-get install $packages"
chroot "$root" apt-get update -qq > "$work/apt.log" 2>&1 || { tail -n 20 "$work/apt.log" >&2; exit 1; }
if ! chroot "$root" env DEBIAN_FRONTEND=noninteractive apt-get install -y -q \
        --no-install-recommends $packages >> "$work/apt.log" 2>&1; then
    tail -n 30 "$work/apt.log" >&2
    echo "image: error: apt-get install failed" >&2
    exit 1
fi
chroot "$root" apt-get clean
rm -rf "$root"/var/lib/apt/lists/* "$root/usr/sbin/policy-rc.d"

cat > "$root/etc/fstab" <<'EOF'
/dev/vda / ext4 defaults,noatime,errors=remount-ro 0 1
EOF
echo raspberrypi > "$root/etc/hostname"
printf '127.0.0.1 localhost\n::1 localhost\n' > "$root/etc/hosts"
# qemu's user-mode network: DHCP from 10.0.2.2, DNS at 10.0.2.3.
mkdir -p "$root/etc/systemd/network"
printf '[Match]\nName=e*\n\n[Network]\nDHCP=ipv4\n' > "$root/etc/systemd/network/20-wired.network"
rm -f "$root/etc/resolv.conf"
echo "nameserver 10.0.2.3" > "$root/etc/resolv.conf"
# Persistent journal, as on Raspberry Pi OS: `journalctl --user` needs per-user files.
mkdir -p "$root/var/log/journal"
# Raspberry Pi OS's sshd: keys only, PAM on (pam_systemd gives logins XDG_RUNTIME_DIR).
cat > "$root/etc/ssh/sshd_config.d/fer-edge.conf" <<'EOF'
PermitRootLogin no
PasswordAuthentication no
KbdInteractiveAuthentication no
HostKey /etc/ssh/ssh_host_ed25519_key
EOF

# As on Raspberry Pi OS, the default user may sudo without a password (010_pi-nopasswd).
echo "pi ALL=(ALL) NOPASSWD: ALL" > "$root/etc/sudoers.d/010_pi-nopasswd"
chmod 440 "$root/etc/sudoers.d/010_pi-nopasswd"

cat > "$root/usr/local/sbin/fer-pi-seed" <<'EOF'
#!/bin/sh
# Reads this instance's seed disk (made by deploy/pi/system.py) into place before sshd.
set -eu
mkdir -p /run/fer-seed
mount -o ro LABEL=FERSEED /run/fer-seed
s=/run/fer-seed
install -m 600 "$s/ssh_host_ed25519_key" /etc/ssh/ssh_host_ed25519_key
install -m 644 "$s/ssh_host_ed25519_key.pub" /etc/ssh/ssh_host_ed25519_key.pub
install -d -m 700 -o pi -g pi /home/pi/.ssh
install -m 600 -o pi -g pi "$s/authorized_keys" /home/pi/.ssh/authorized_keys
[ -f "$s/ca-certificates.crt" ] && install -m 644 "$s/ca-certificates.crt" /etc/ssl/certs/ca-certificates.crt
[ -f "$s/pip.conf" ] && install -m 644 "$s/pip.conf" /etc/pip.conf
[ -f "$s/fer-edge-emulated" ] && install -m 644 "$s/fer-edge-emulated" /etc/fer-edge-emulated
if [ -f "$s/hostname" ]; then
    name=$(cat "$s/hostname")
    echo "$name" > /etc/hostname
    hostname "$name"
    printf '127.0.0.1 localhost\n::1 localhost\n127.0.1.1 %s\n' "$name" > /etc/hosts
fi
umount /run/fer-seed
EOF
chmod 755 "$root/usr/local/sbin/fer-pi-seed"
cat > "$root/etc/systemd/system/fer-pi-seed.service" <<'EOF'
[Unit]
Description=fer-edge emulated Pi: this instance's keys and name from the seed disk
DefaultDependencies=no
After=local-fs.target
Before=ssh.service systemd-networkd.service sysinit.target
Wants=local-fs.target

[Service]
Type=oneshot
RemainAfterExit=yes
ExecStart=/usr/local/sbin/fer-pi-seed

[Install]
WantedBy=sysinit.target
EOF
chroot "$root" systemctl enable fer-pi-seed.service systemd-networkd.service ssh.service
# Nothing that wakes up to spend an emulated CPU's time on apt or fstrim.
for unit in apt-daily.timer apt-daily-upgrade.timer fstrim.timer e2scrub_all.timer \
        e2scrub_reap.service; do
    chroot "$root" systemctl mask "$unit" >/dev/null 2>&1 || true
done
# The kernel's messages go to the serial port, which system.py writes to a file.
chroot "$root" systemctl mask serial-getty@ttyAMA0.service >/dev/null 2>&1 || true
rm -f "$root"/etc/ssh/ssh_host_*
echo "$(cat "$root/etc/fer-edge-pi-suite") system" > "$root/etc/fer-edge-pi-image"

kernel=$(ls "$root"/boot/vmlinuz-* | sort -V | tail -n 1)
initrd=$(ls "$root"/boot/initrd.img-* | sort -V | tail -n 1)
mkdir -p "$out.part"
cp "$kernel" "$out.part/vmlinuz"
cp "$initrd" "$out.part/initrd.img"
umount "$root/dev" "$root/sys" "$root/proc"
rm -f "$out.part/disk.img"
mkfs.ext4 -q -L fer-pi-root -d "$root" "$out.part/disk.img" "$size"
rm -rf "$out"
mv "$out.part" "$out"
echo "image: wrote $out ($(du -sh "$out" | cut -f1) on disk; kernel $(basename "$kernel"))"
