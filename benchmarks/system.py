"""What the benchmarks need from the host: CPU and memory use, a progress bar, and (from
evaluation/machine.py) machine and software identity and result folders.

Standard library at import time: this runs on a Raspberry Pi that has just the `edge` extra.
"""

from __future__ import annotations

import sys
import time

# Machine identity and result folders live with evaluation (model cards record them too);
# re-exported here for the benchmarks, which sit above evaluation.
from fer_edge.evaluation.machine import (  # noqa: F401
    RESULTS_ROOT,
    cpu_model,
    machine_info,
    machine_slug,
    results_dir,
    software_info,
)


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
