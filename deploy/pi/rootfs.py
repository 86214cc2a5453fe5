"""The emulated Pi's userland: an arm64 Debian rootfs built once by rootfs.sh and cached.

The cache is a tarball per Pi OS, keyed by the recipe: the sha256 of rootfs.sh and the suite.
Editing the recipe therefore builds a new rootfs; an unchanged one is reused across runs
(~/.cache/fer-edge/pi-rootfs/, or $FER_EDGE_PI_CACHE). Building needs root, debootstrap and
qemu-user-static with qemu's aarch64 handler in binfmt_misc, which `ensure_binfmt` sets up.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from fer_edge.edge.contract import atomic_write_text
from fer_edge.edge.errors import FerEdgeError

HERE = Path(__file__).resolve().parent
RECIPE = HERE / "rootfs.sh"
BINFMT = Path("/proc/sys/fs/binfmt_misc")
QEMU = "/usr/bin/qemu-aarch64-static"
# qemu's own registration for aarch64 ELF binaries (Debian's /usr/share/binfmts/qemu-aarch64).
# Flag F opens the interpreter now, so it also runs inside a chroot that has no qemu in it.
AARCH64_MAGIC = r"\x7f\x45\x4c\x46\x02\x01\x01\x00\x00\x00\x00\x00\x00\x00\x00\x00\x02\x00\xb7\x00"
AARCH64_MASK = r"\xff\xff\xff\xff\xff\xff\xff\x00\xff\xff\xff\xff\xff\xff\xff\xff\xfe\xff\xff\xff"
BUILD_TIMEOUT = 40 * 60  # a cold build takes ~5 min here; far beyond that something hangs


def in_namespaces(*extra: str) -> list[str]:
    """unshare's argv for a child in private mount and PID namespaces: whatever it mounts or
    starts dies with it (--kill-child), even when it fails half-way."""
    return ["unshare", "--mount", "--propagation", "private", "--pid", *extra, "--fork",
            "--kill-child"]  # fmt: skip


class EmulatorError(FerEdgeError):
    """The emulated Pi cannot be built or started; the message says what to install or do."""

    exit_code = 1


@dataclass(frozen=True)
class PiOS:
    suite: str  # Debian suite = the Raspberry Pi OS release based on it
    python: str  # X.Y of its python3

    @property
    def label(self) -> str:
        return f"Debian {self.suite} arm64 (Python {self.python})"


OSES = {"bookworm": PiOS("bookworm", "3.11"), "trixie": PiOS("trixie", "3.13")}


def pi_os(name: str) -> PiOS:
    try:
        return OSES[name]
    except KeyError:
        raise EmulatorError(f"PI_OS={name}: choose {' or '.join(OSES)}") from None


def cache_dir() -> Path:
    if os.environ.get("FER_EDGE_PI_CACHE"):
        return Path(os.environ["FER_EDGE_PI_CACHE"])
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "fer-edge" / "pi-rootfs"


def recipe_key(os_: PiOS) -> str:
    digest = hashlib.sha256(RECIPE.read_bytes() + b"\0" + os_.suite.encode())
    return digest.hexdigest()[:16]


def tarball(os_: PiOS) -> Path:
    return cache_dir() / f"{os_.suite}-arm64-{recipe_key(os_)}.tar.gz"


def require_root(what: str) -> None:
    if os.geteuid() != 0:
        raise EmulatorError(f"{what} needs root (chroot, namespaces, binfmt_misc); run as root")


def require_tools(*tools: str) -> None:
    packages = {
        "debootstrap": "debootstrap",
        QEMU: "qemu-user-static",
        "unshare": "util-linux",
        "chroot": "coreutils",
        "ssh": "openssh-client",
        "ssh-keygen": "openssh-client",
        "tar": "tar",
        "scp": "openssh-client",
        "qemu-system-aarch64": "qemu-system-arm",
        "qemu-img": "qemu-utils",
        "mkfs.ext4": "e2fsprogs",
    }
    missing = [t for t in tools if shutil.which(t) is None]
    if missing:
        pkgs = " ".join(sorted({packages.get(t, t) for t in missing}))
        raise EmulatorError(
            f"{', '.join(missing)} not found; install: apt-get install -y {pkgs} "
            "(or run deploy/ci-system-deps.sh)"
        )


def ensure_binfmt() -> None:
    """Make the kernel run aarch64 ELF files with qemu-aarch64-static (mount + register)."""
    require_root("the emulated Pi")
    require_tools(QEMU)
    if not (BINFMT / "register").exists():
        proc = subprocess.run(
            ["mount", "-t", "binfmt_misc", "binfmt_misc", str(BINFMT)],
            capture_output=True,
            text=True,
        )
        if proc.returncode != 0:
            raise EmulatorError(f"cannot mount binfmt_misc: {proc.stderr.strip()}")
    entry = BINFMT / "qemu-aarch64"
    if entry.exists():
        if entry.read_text().startswith("enabled"):
            return
        entry.write_text("1")
        return
    rule = f":qemu-aarch64:M::{AARCH64_MAGIC}:{AARCH64_MASK}:{QEMU}:F"
    try:
        (BINFMT / "register").write_text(rule)
    except OSError as exc:
        raise EmulatorError(f"cannot register qemu-aarch64 in binfmt_misc: {exc}") from None


def build_meta(path: Path) -> dict:
    try:
        return json.loads(Path(f"{path}.json").read_text())
    except (OSError, ValueError):
        return {}


def ensure_rootfs(os_: PiOS, log=print) -> Path:
    """The cached tarball for os_, built first when the recipe has none (under a lock, so
    parallel runs build it once)."""
    out = tarball(os_)
    if out.is_file():
        return out
    require_root("building the emulated Pi")
    require_tools("debootstrap", "unshare", "chroot", "tar")
    ensure_binfmt()
    out.parent.mkdir(parents=True, exist_ok=True)
    with open(out.parent / f".{out.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if out.is_file():  # another process built it while we waited
            return out
        log(f"pi-emulator: building {os_.label} into {out} (about 5 minutes, once per recipe)")
        t0 = time.monotonic()
        # Private mount and PID namespaces: debootstrap's mounts and any daemon a package
        # starts die with them, even when the build fails half-way.
        argv = [*in_namespaces("--mount-proc"), "sh", str(RECIPE), os_.suite, str(out)]
        try:
            proc = subprocess.run(argv, capture_output=True, text=True, timeout=BUILD_TIMEOUT)
        except subprocess.TimeoutExpired:
            minutes = BUILD_TIMEOUT // 60
            raise EmulatorError(f"building {os_.label} took over {minutes} min") from None
        if proc.returncode != 0 or not out.is_file():
            tail = "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-15:])
            raise EmulatorError(f"building {os_.label} failed:\n{tail}")
        seconds = round(time.monotonic() - t0, 1)
        meta = {"suite": os_.suite, "recipe": recipe_key(os_), "build_seconds": seconds}
        atomic_write_text(f"{out}.json", json.dumps(meta) + "\n")
        log(f"pi-emulator: built {out.name} in {seconds:.0f} s")
    return out
