"""Prove the runtime requirements install from wheels on a 64-bit Pi, without a Pi.

`pip download --only-binary :all:` with the Pi's platform tags resolves exactly what pip on
the Pi would pick, and fails where it would fall back to building from source (which takes
hours on a Pi, or fails for lack of a compiler). pip does not widen a manylinux_2_X tag to
the older ones a glibc also accepts, so every tag up to the OS's glibc is listed.

Limit: pip evaluates environment markers against *this* machine, so a marker on
platform_machine is judged as on x86_64; the `edge` extra's only marker excludes armv7l,
which is true for both machines.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from deploy.remote import StepError, last_line
from deploy.stage import edge_requirements, requirements_text


@dataclass(frozen=True)
class PiTarget:
    name: str
    python: str  # X.Y of the OS's python3
    glibc: tuple[int, int]

    def platforms(self) -> list[str]:
        major, minor = self.glibc
        newer = [f"manylinux_{major}_{m}_aarch64" for m in range(17, minor + 1)]
        return ["manylinux2014_aarch64", *newer]


TARGETS = (
    PiTarget("Raspberry Pi OS Bookworm (64-bit)", "3.11", (2, 36)),
    PiTarget("Raspberry Pi OS Trixie (64-bit)", "3.13", (2, 41)),
)


def download_argv(target: PiTarget, requirements: Path, dest: Path) -> list[str]:
    abi = "cp" + target.python.replace(".", "")
    argv = [
        sys.executable,
        "-m",
        "pip",
        "download",
        "--disable-pip-version-check",
        "--progress-bar",
        "off",
        "--quiet",
        "--only-binary",
        ":all:",
        "--implementation",
        "cp",
        "--python-version",
        target.python,
        "--abi",
        abi,
        "--abi",
        "abi3",
        "--abi",
        "none",
        "-r",
        str(requirements),
        "-d",
        str(dest),
    ]
    for platform in target.platforms():
        argv += ["--platform", platform]
    return argv


def check_wheels(targets=TARGETS, out=print) -> None:
    """Download every target's wheels into a temporary folder; StepError on the first failure."""
    with tempfile.TemporaryDirectory(prefix="fer-edge-wheels-") as tmp:
        requirements = Path(tmp) / "requirements-edge.txt"
        requirements.write_text(requirements_text(edge_requirements()))
        for target in targets:
            dest = Path(tmp) / target.python
            proc = subprocess.run(
                download_argv(target, requirements, dest),
                check=False,
                capture_output=True,
                text=True,
                stdin=subprocess.DEVNULL,
            )
            if proc.returncode != 0:
                raise StepError(
                    f"wheels {target.python}",
                    f"{target.name}, Python {target.python}: {last_line(proc.stderr)}",
                )
            wheels = sorted(p.name for p in dest.glob("*.whl"))
            glibc = ".".join(map(str, target.glibc))
            out(f"ok: {target.name}, Python {target.python}, glibc {glibc}:")
            for name in wheels:
                out(f"    {name}")
