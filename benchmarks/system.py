"""What the benchmarks need from the host: machine and software identity, CPU and memory use,
result folders, a progress bar.

Standard library at import time: this runs on a Raspberry Pi that has just the `edge` extra.
"""

from __future__ import annotations

import logging
import os
import platform
import re
import sys
import time
from datetime import date
from pathlib import Path

log = logging.getLogger(__name__)

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


class ProcessMeter:
    """CPU use and peak resident memory of this process between `start()` and `stop()`.

    CPU is process time (every thread: decoding, interpreter, TensorFlow) over wall time, so
    100% is one core busy. On Linux the kernel's peak-RSS mark is reset at start, so the peak
    belongs to this measurement; elsewhere it is the process's peak so far (`rss_scope`).
    """

    def start(self) -> ProcessMeter:
        self.rss_scope = "run" if _reset_peak_rss() else "process"
        self._cpu0, self._wall0 = time.process_time(), time.perf_counter()
        return self

    def stop(self) -> dict:
        cpu = time.process_time() - self._cpu0
        wall = max(1e-9, time.perf_counter() - self._wall0)
        peak = _peak_rss_bytes()
        return {
            "cpu_percent": round(100.0 * cpu / wall, 1),
            "peak_rss_mib": round(peak / 2**20, 1) if peak else None,
            "rss_scope": self.rss_scope if peak else None,
        }


def _reset_peak_rss() -> bool:
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")  # resets VmHWM (Linux 4.0+)
        return True
    except OSError:
        return False


def _peak_rss_bytes() -> int | None:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        import resource  # not on Windows
    except ImportError:
        return None
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak if sys.platform == "darwin" else peak * 1024  # macOS reports bytes, Linux KiB


class _NoBar:
    def update(self, n: int = 1) -> None:
        pass

    def close(self) -> None:
        pass


def progress_bar(total: int | None, desc: str):
    """A tqdm bar on stderr when tqdm is installed and stderr is a terminal; else nothing."""
    try:
        from tqdm import tqdm
    except ImportError:
        return _NoBar()
    return tqdm(
        total=total or None,
        desc=desc,
        unit="frame",
        leave=False,
        file=sys.stderr,
        disable=None,
        dynamic_ncols=True,
    )
