"""A whole emulated Raspberry Pi that boots: kernel, systemd, sshd, under qemu-system-aarch64.

Where deploy/pi/emulator.py runs the Pi's userland under qemu-user (fast, no systemd), this
boots the same Debian arm64 userland (rootfs.sh) plus Debian's arm64 kernel and initramfs,
systemd and journald (image.sh) as a virtual machine: QEMU's `virt` board with a Cortex-A72
(a Pi 4's CPU), TCG, booted directly with -kernel/-initrd. Its sshd is reached through QEMU's
user-mode network on 127.0.0.1:PORT only. Each instance is a copy-on-write overlay over the
cached image plus a small seed disk with its own host key, the client's key and hostname, so
nothing secret is baked into the image and a power cut (killing QEMU) leaves the overlay as
a real SD card would be left.

The image is cached like the rootfs tarballs: ~/.cache/fer-edge/pi-system/SUITE-arm64-KEY/
(or $FER_EDGE_PI_CACHE/../pi-system), KEY = sha256 of rootfs.sh, image.sh and the suite.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

from fer_edge.edge.contract import atomic_write_text

from deploy.pi.emulator import free_port
from deploy.pi.machine import host_ca_bundle, host_cpu
from deploy.pi.rootfs import (
    HERE,
    RECIPE,
    EmulatorError,
    PiOS,
    cache_dir,
    ensure_binfmt,
    ensure_rootfs,
    in_namespaces,
    require_root,
    require_tools,
)

IMAGE_RECIPE = HERE / "image.sh"
QEMU_SYSTEM = "qemu-system-aarch64"
BUILD_TIMEOUT = 60 * 60
USER = "pi"


def image_key(os_: PiOS) -> str:
    digest = hashlib.sha256(
        RECIPE.read_bytes() + b"\0" + IMAGE_RECIPE.read_bytes() + b"\0" + os_.suite.encode()
    )
    return digest.hexdigest()[:16]


def image_dir(os_: PiOS) -> Path:
    return cache_dir().parent / "pi-system" / f"{os_.suite}-arm64-{image_key(os_)}"


def image_meta(path: Path) -> dict:
    try:
        return json.loads((path / "build.json").read_text())
    except (OSError, ValueError):
        return {}


def ensure_image(os_: PiOS, log=print) -> Path:
    """The cached bootable image of os_ (disk.img, vmlinuz, initrd.img), built when missing."""
    out = image_dir(os_)
    if (out / "build.json").is_file():
        return out
    require_root("building the emulated Pi's disk image")
    require_tools("unshare", "chroot", "tar", "mkfs.ext4")
    ensure_binfmt()
    tarball = ensure_rootfs(os_, log=log)
    out.parent.mkdir(parents=True, exist_ok=True)
    with open(out.parent / f".{out.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if (out / "build.json").is_file():
            return out
        log(f"pi-system: building {os_.label} with kernel and systemd into {out} (~10 min)")
        t0 = time.monotonic()
        argv = [*in_namespaces("--mount-proc"), "sh", str(IMAGE_RECIPE), str(tarball), str(out)]
        try:
            proc = subprocess.run(argv, capture_output=True, text=True, timeout=BUILD_TIMEOUT)
        except subprocess.TimeoutExpired:
            raise EmulatorError(f"building the {os_.label} image took over 60 min") from None
        if proc.returncode != 0 or not (out / "disk.img").is_file():
            tail = "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-15:])
            raise EmulatorError(f"building the {os_.label} image failed:\n{tail}")
        seconds = round(time.monotonic() - t0, 1)
        meta = {"suite": os_.suite, "key": image_key(os_), "build_seconds": seconds}
        atomic_write_text(out / "build.json", json.dumps(meta) + "\n")
        log(f"pi-system: built {out.name} in {seconds:.0f} s")
    return out


class PiSystem:
    """A booting emulated Pi: `with PiSystem(pi_os("bookworm")) as pi:` boots it and waits for
    SSH; `power_cut()` kills QEMU without a shutdown, `boot()` starts it again on the same disk.
    Leaving the block kills QEMU and deletes the instance (overlay, seed, keys, console log)."""

    def __init__(
        self,
        os_: PiOS,
        port: int = 0,
        memory_mb: int = 2048,
        cpus: int = 2,
        hostname: str = "fer-pi",
        log=print,
    ):
        self.os, self.port, self.memory_mb, self.cpus = os_, port or free_port(), memory_mb, cpus
        self.hostname, self.log = hostname, log
        self.dir: Path | None = None
        self.image: Path | None = None
        self._qemu: subprocess.Popen | None = None
        self.boot_seconds: list[float] = []  # QEMU start (or reset) -> first SSH login

    # How to reach it, as a user would pass it to make.
    @property
    def target(self) -> str:
        return f"{USER}@127.0.0.1"

    @property
    def key(self) -> Path:
        return self.dir / "pi_key"

    @property
    def known_hosts(self) -> Path:
        return self.dir / "known_hosts"

    @property
    def ssh_opts(self) -> str:
        return (
            f"-p {self.port} -i {self.key} -o UserKnownHostsFile={self.known_hosts} "
            "-o IdentitiesOnly=yes"
        )

    @property
    def console(self) -> Path:
        return self.dir / "console.log"

    def start(self) -> PiSystem:
        require_root("the emulated Pi system")  # building the image needs it; so do its tests
        require_tools(QEMU_SYSTEM, "qemu-img", "mkfs.ext4", "ssh", "ssh-keygen")
        self.image = ensure_image(self.os, log=self.log)
        self.dir = Path(tempfile.mkdtemp(prefix=f"fer-edge-pisys-{self.os.suite}-"))
        try:
            self._create()
            self.boot()
        except BaseException:
            self.stop()
            raise
        return self

    def _create(self) -> None:
        """A copy-on-write disk over the cached image, and this instance's seed disk."""
        subprocess.run(
            ["qemu-img", "create", "-q", "-f", "qcow2", "-F", "raw",
             "-b", str(self.image / "disk.img"), str(self.dir / "disk.qcow2")],
            check=True, capture_output=True,
        )  # fmt: skip
        seed = self.dir / "seed"
        seed.mkdir()
        keygen = ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", ""]
        subprocess.run([*keygen, "-f", str(seed / "ssh_host_ed25519_key")], check=True)
        subprocess.run([*keygen, "-f", str(self.key)], check=True)
        shutil.copyfile(f"{self.key}.pub", seed / "authorized_keys")
        host_pub = (seed / "ssh_host_ed25519_key.pub").read_text().split()[:2]
        atomic_write_text(self.known_hosts, f"[127.0.0.1]:{self.port} {' '.join(host_pub)}\n")
        (seed / "hostname").write_text(self.hostname + "\n")
        ca = host_ca_bundle()
        if ca is not None:  # what this machine trusts (a TLS proxy's CA), for pip on the Pi
            shutil.copyfile(ca, seed / "ca-certificates.crt")
            (seed / "pip.conf").write_text("[global]\ncert = /etc/ssl/certs/ca-certificates.crt\n")
        (seed / "fer-edge-emulated").write_text(
            f"qemu-system-aarch64 TCG cortex-a72 (Raspberry Pi 4 CPU) on {host_cpu()}\n"
        )
        subprocess.run(
            ["mkfs.ext4", "-q", "-L", "FERSEED", "-d", str(seed), str(self.dir / "seed.img"), "8M"],
            check=True, capture_output=True,
        )  # fmt: skip

    def qemu_argv(self) -> list[str]:
        return [
            QEMU_SYSTEM, "-M", "virt", "-cpu", "cortex-a72", "-accel", "tcg,thread=multi",
            "-smp", str(self.cpus), "-m", str(self.memory_mb),
            "-kernel", str(self.image / "vmlinuz"), "-initrd", str(self.image / "initrd.img"),
            "-append", "root=/dev/vda rw console=ttyAMA0 net.ifnames=0",
            "-drive", f"if=none,id=root,file={self.dir / 'disk.qcow2'},format=qcow2",
            "-device", "virtio-blk-pci,drive=root",
            "-drive", f"if=none,id=seed,file={self.dir / 'seed.img'},format=raw,readonly=on",
            "-device", "virtio-blk-pci,drive=seed",
            "-netdev", f"user,id=net0,hostfwd=tcp:127.0.0.1:{self.port}-:22",
            # romfile= : no PXE option ROM (ipxe-qemu) is needed for a direct kernel boot
            "-device", "virtio-net-pci,netdev=net0,romfile=", "-device", "virtio-rng-pci",
            "-display", "none", "-monitor", "none", "-serial", f"file:{self.console}",
        ]  # fmt: skip

    def boot(self, timeout: float = 600) -> float:
        """Start QEMU on this instance's disk and wait for an SSH login; returns the seconds."""
        assert self._qemu is None or self._qemu.poll() is not None, "already running"
        t0 = time.monotonic()
        self._qemu = subprocess.Popen(
            self.qemu_argv(), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
            stderr=(self.dir / "qemu.log").open("a"),
        )  # fmt: skip
        return self.wait_for_ssh(t0, timeout)

    def wait_for_ssh(self, t0: float, timeout: float = 600) -> float:
        while True:
            if self._qemu.poll() is not None:
                raise EmulatorError(f"QEMU exited {self._qemu.returncode}: {self.tail()}")
            if self.ssh("true", timeout=20).returncode == 0:
                seconds = time.monotonic() - t0
                self.boot_seconds.append(seconds)
                return seconds
            if time.monotonic() - t0 > timeout:
                raise EmulatorError(f"no SSH login within {timeout:.0f} s: {self.tail()}")
            time.sleep(1)

    def tail(self, n: int = 1500) -> str:
        try:
            return (self.console.read_text(errors="replace")[-n:]).strip()
        except OSError:
            return ""

    def ssh(self, command: str, timeout: float = 300) -> subprocess.CompletedProcess:
        argv = ["ssh", *self.ssh_opts.split(), "-o", "BatchMode=yes",
                "-o", "ConnectTimeout=10", self.target, command]  # fmt: skip
        try:
            return subprocess.run(
                argv, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL
            )
        except subprocess.TimeoutExpired as exc:
            out = exc.stdout.decode() if isinstance(exc.stdout, bytes) else exc.stdout or ""
            return subprocess.CompletedProcess(argv, 124, out, f"timeout: {exc}")

    def scp(self, src: Path, dest: str) -> None:
        argv = ["scp", "-q", "-P", str(self.port), "-i", str(self.key),
                "-o", f"UserKnownHostsFile={self.known_hosts}", "-o", "IdentitiesOnly=yes",
                "-o", "BatchMode=yes", str(src), f"{self.target}:{dest}"]  # fmt: skip
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=300)
        if proc.returncode != 0:
            raise EmulatorError(f"scp {src} -> {dest}: {proc.stderr.strip()}")

    def power_cut(self) -> None:
        """Pull the plug: SIGKILL to QEMU, no shutdown; whatever the guest had not written to
        its disk is gone, as on a Pi whose power fails."""
        if self._qemu is not None and self._qemu.poll() is None:
            self._qemu.send_signal(signal.SIGKILL)
            self._qemu.wait(timeout=30)

    def stop(self) -> None:
        """Kill QEMU and delete the instance. Safe to call twice."""
        self.power_cut()
        if self.dir is not None and self.dir.exists():
            shutil.rmtree(self.dir)
        self.dir = None

    def __enter__(self) -> PiSystem:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
