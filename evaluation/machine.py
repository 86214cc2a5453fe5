"""Where evaluation results go and which machine and software made them: identity for every
result file (cards, bench-accuracy, the benchmarks), in one place.

Standard library at import time: this runs on a Raspberry Pi that has just the `edge` extra.
"""

from __future__ import annotations

import os
import platform
import re
import sys
from datetime import date
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parents[1]
RESULTS_ROOT = PROJECT_ROOT / "benchmarks" / "results"
_DEVICE_TREE_MODEL = Path("/proc/device-tree/model")
# Words that name a brand tier, a trademark or a clock rather than the chip.
_SLUG_NOISE = re.compile(
    r"\((?:r|tm)\)|\b(?:cpu|processor|platinum|gold|silver|bronze|\d+-core)\b|\brev\s*[\d.]+|@.*$"
)


def cpu_model() -> str:
    """The board on a Pi (its device tree says "Raspberry Pi 5 Model B"), else the CPU name."""
    if _DEVICE_TREE_MODEL.is_file():
        return _DEVICE_TREE_MODEL.read_bytes().rstrip(b"\0").decode(errors="replace").strip()
    try:
        with open("/proc/cpuinfo") as f:
            info = dict(line.split(":", 1) for line in f if ":" in line)
    except OSError:
        info = {}
    info = {k.strip().lower(): v.strip() for k, v in info.items()}
    return (
        info.get("model name")
        or info.get("hardware")
        or platform.processor()
        or platform.machine()
        or "unknown"
    )


def machine_slug(cpu: str, cores: int) -> str:
    """'Intel(R) Xeon(R) Platinum 8480C' and 2 cores -> 'intel-xeon-8480c-2c'."""
    words = re.findall(r"[a-z0-9]+", _SLUG_NOISE.sub(" ", cpu.lower()))
    return "-".join([*words[:6], f"{cores}c"])


def machine_info() -> dict:
    cpu = cpu_model()
    cores = os.cpu_count() or 1
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else cores
    return {
        "slug": machine_slug(cpu, cores),
        "cpu": cpu,
        "cores": cores,
        "usable_cores": usable,
        "platform": platform.platform(),
        "arch": platform.machine(),
        "python": platform.python_version(),
    }


def results_dir(root: str | os.PathLike | None, slug: str) -> Path:
    """<root>/<machine>-<YYYYMMDD>: one folder per machine and day."""
    return Path(root or RESULTS_ROOT) / f"{slug}-{date.today():%Y%m%d}"


def software_info() -> dict:
    import cv2
    import numpy as np
    from fer_edge.edge.errors import FerEdgeError
    from fer_edge.edge.interpreter import load_interpreter_class

    try:
        _, package, version = load_interpreter_class()
    except FerEdgeError:
        package = version = None
    info = {
        "interpreter": package,
        "interpreter_version": version,
        "opencv": cv2.__version__,
        "numpy": np.__version__,
    }
    tf = sys.modules.get("tensorflow")  # only when something (the baseline, a .keras) loaded it
    if tf is not None:
        info["tensorflow"] = tf.__version__
    return info
