"""An emulated Raspberry Pi on this machine, reachable over SSH on 127.0.0.1.

The Pi's own userland (rootfs.py: arm64 Debian, the base of Raspberry Pi OS) is unpacked into
a temporary folder and "booted" by start.sh in private mount, PID and UTS namespaces: every
arm64 program in it, including its sshd, runs under qemu-user via binfmt_misc. The SSH server
is the Pi's own arm64 OpenSSH, not a host sshd entering a chroot: it runs fine under qemu-user
(its seccomp sandbox is refused by qemu and sshd carries on without it, as it does on kernels
without seccomp), so every `ssh` the deploy makes lands in an aarch64 shell, exactly as on a Pi.

The CPU is a Raspberry Pi's (qemu's cortex-a72 = Pi 4 by default, or cortex-a76 = Pi 5), and
/proc/cpuinfo says so. That is not cosmetic: qemu 7.2 (Debian Bookworm's) passes this
machine's x86 /proc/cpuinfo through, and LiteRT's CPU detection (pytorch/cpuinfo, used by
XNNPACK) then crashes the interpreter with a segfault as soon as /sys is mounted; newer qemu
(8.1+) emulates /proc/cpuinfo for aarch64 itself, which is what the bind mount here does.

Each start is a fresh Pi with new host and client keys; `stop()` (or leaving the `with`
block) ends the namespace, which takes all its processes and mounts along, and deletes it.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

from fer_edge.edge.contract import atomic_write_text

from deploy.pi.machine import CPUS, SSHD_CONFIG, cpuinfo, host_ca_bundle, host_cpu
from deploy.pi.rootfs import (
    HERE,
    EmulatorError,
    PiOS,
    ensure_binfmt,
    ensure_rootfs,
    in_namespaces,
    require_root,
    require_tools,
)

START = HERE / "start.sh"
USER = "pi"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class EmulatedPi:
    """An arm64 Pi OS userland with its own sshd on 127.0.0.1:port; a context manager."""

    def __init__(self, os_: PiOS, port: int = 0, cpu: str = "cortex-a72", log=print):
        if cpu not in CPUS:
            raise EmulatorError(f"cpu {cpu}: choose {' or '.join(CPUS)}")
        self.os, self.port, self.cpu, self.log = os_, port or free_port(), cpu, log
        self.dir: Path | None = None
        self.uid = self.gid = -1  # the pi user's, read from the rootfs at start
        self._proc: subprocess.Popen | None = None
        self._log_file = None

    # Where things are: the Pi's paths seen from the host, and how to reach it.
    @property
    def root(self) -> Path:
        assert self.dir is not None, "start() first"
        return self.dir / "root"

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
        """SSH_OPTS for make: this Pi's port and key; host-key checking stays on."""
        return (
            f"-p {self.port} -i {self.key} -o UserKnownHostsFile={self.known_hosts} "
            "-o IdentitiesOnly=yes"
        )

    def host_path(self, pi_path: str) -> Path:
        """/home/pi/x on the Pi -> the same file seen from this machine."""
        return self.root / pi_path.lstrip("/")

    @property
    def home(self) -> str:
        return f"/home/{USER}"

    def start(self) -> EmulatedPi:
        require_root("the emulated Pi")
        require_tools("unshare", "chroot", "tar", "ssh", "ssh-keygen")
        ensure_binfmt()
        tar = ensure_rootfs(self.os, log=self.log)
        self.dir = Path(tempfile.mkdtemp(prefix=f"fer-edge-pi-{self.os.suite}-"))
        try:
            self.root.mkdir()
            unpack = ["tar", "--numeric-owner", "-xpzf", str(tar), "-C", str(self.root)]
            subprocess.run(unpack, check=True, capture_output=True, timeout=600)
            self._prepare()
            self._boot()
        except BaseException:
            self.stop()
            raise
        return self

    def _prepare(self) -> None:
        etc = self.root / "etc"
        keygen = ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", ""]
        host_key = etc / "ssh" / "ssh_host_ed25519_key"
        subprocess.run([*keygen, "-f", str(host_key)], check=True)
        subprocess.run([*keygen, "-f", str(self.key)], check=True)
        host_pub = Path(f"{host_key}.pub").read_text().split()[:2]
        atomic_write_text(self.known_hosts, f"[127.0.0.1]:{self.port} {' '.join(host_pub)}\n")
        config = SSHD_CONFIG.format(port=self.port, user=USER, cpu=self.cpu)
        atomic_write_text(etc / "ssh" / "fer-edge-sshd_config", config)
        self.uid, self.gid = uid, gid = self._pi_ids()
        ssh_dir = self.host_path(f"{self.home}/.ssh")
        ssh_dir.mkdir(mode=0o700, exist_ok=True)
        keys = ssh_dir / "authorized_keys"
        keys.write_text(Path(f"{self.key}.pub").read_text())
        keys.chmod(0o600)
        for path in (ssh_dir, keys):
            os.chown(path, uid, gid)
        # The network is this machine's (loopback sshd, PyPI for pip): its DNS and trust.
        resolv = Path("/etc/resolv.conf")
        if resolv.exists():
            (etc / "resolv.conf").unlink(missing_ok=True)
            (etc / "resolv.conf").write_text(resolv.read_text())
        hostname = f"pi-{self.os.suite}"
        (etc / "hostname").write_text(hostname + "\n")
        (etc / "hosts").write_text(f"127.0.0.1 localhost\n::1 localhost\n127.0.1.1 {hostname}\n")
        ca = host_ca_bundle()
        if ca is not None:
            shutil.copyfile(ca, etc / "ssl" / "certs" / "ca-certificates.crt")
            # The venv's pip carries its own CA list; point it at the system one.
            (etc / "pip.conf").write_text("[global]\ncert = /etc/ssl/certs/ca-certificates.crt\n")
        # Read by the deployed Makefile: benchmark numbers from here are labelled emulated.
        pi_model = CPUS[self.cpu][2]
        (etc / "fer-edge-emulated").write_text(
            f"qemu-user {self.cpu} ({pi_model} CPU) on {host_cpu()}\n"
        )
        (self.dir / "cpuinfo").write_text(cpuinfo(self.cpu))

    def _pi_ids(self) -> tuple[int, int]:
        for line in (self.root / "etc" / "passwd").read_text().splitlines():
            fields = line.split(":")
            if fields[0] == USER:
                return int(fields[2]), int(fields[3])
        raise EmulatorError(f"the rootfs has no {USER} user; delete the cached tarball")

    def _boot(self) -> None:
        self._log_file = (self.dir / "sshd.log").open("w")
        argv = [
            *in_namespaces("--uts"),  # and its own hostname
            "sh",
            str(START),
            str(self.root),
            f"pi-{self.os.suite}",
            str(self.dir / "cpuinfo"),
            self.cpu,
        ]
        self._proc = subprocess.Popen(
            argv, stdin=subprocess.DEVNULL, stdout=self._log_file, stderr=subprocess.STDOUT
        )
        deadline = time.monotonic() + 90
        while True:
            if self._proc.poll() is not None:
                raise EmulatorError(f"the emulated Pi's sshd exited: {self.sshd_log()[-800:]}")
            if self.ssh("true", timeout=30).returncode == 0:
                return
            if time.monotonic() > deadline:
                raise EmulatorError(f"no SSH login within 90 s: {self.sshd_log()[-800:]}")
            time.sleep(0.5)

    def sshd_log(self) -> str:
        try:
            return (self.dir / "sshd.log").read_text()
        except (OSError, TypeError):
            return ""

    def ssh(self, command: str, timeout: float = 300) -> subprocess.CompletedProcess:
        argv = ["ssh", *self.ssh_opts.split(), "-o", "BatchMode=yes", self.target, command]
        try:
            return subprocess.run(
                argv, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL
            )
        except subprocess.TimeoutExpired as exc:
            return subprocess.CompletedProcess(argv, 124, exc.stdout or "", f"timeout: {exc}")

    def processes(self) -> list[tuple[int, str]]:
        """(pid, name) of every process whose root is this Pi's: what stop() must end."""
        if self.dir is None:
            return []
        found, root = [], str(self.root)
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                where = os.readlink(entry / "root")
                name = (entry / "comm").read_text().strip()
            except OSError:
                continue  # gone meanwhile, or a kernel thread
            if where == root or where.startswith(root + "/"):
                found.append((int(entry.name), name))
        return found

    def mounts(self) -> list[str]:
        """Mount points under this Pi's folder as this machine sees them (none, by design)."""
        if self.dir is None:
            return []
        lines = Path("/proc/self/mountinfo").read_text().splitlines()
        return [ln.split()[4] for ln in lines if ln.split()[4].startswith(str(self.dir))]

    def _init_pid(self) -> int | None:
        pid = self._proc.pid
        try:
            children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
        except OSError:
            return None
        return int(children[0]) if children else None

    def stop(self) -> None:
        """End every process of the Pi, then delete it. Safe to call twice."""
        if self._proc is not None and self._proc.poll() is None:
            # unshare ignores SIGTERM; the namespace's init (sshd) takes it, and its end makes
            # the kernel kill whatever else runs in the namespace.
            init = self._init_pid()
            if init is not None:
                os.kill(init, signal.SIGTERM)
            try:
                self._proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self._proc.kill()  # --kill-child: the init gets SIGKILL with it
                self._proc.wait(timeout=15)
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None
        deadline = time.monotonic() + 15
        while self.processes():
            if time.monotonic() > deadline:
                raise EmulatorError(f"processes outlived the emulated Pi: {self.processes()}")
            time.sleep(0.1)
        if self.mounts():  # never delete through a mount
            raise EmulatorError(f"mounts outlived the emulated Pi: {self.mounts()}")
        if self.dir is not None and self.dir.exists():
            shutil.rmtree(self.dir)

    def __enter__(self) -> EmulatedPi:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
