"""Frame rate of `run` with and without the MQTT and dashboard sinks, in the same run.

    python -m fer_edge.benchmarks.sinks --source VIDEO [--rounds 3] [--compare-repo DIR ...]

Each variant is a fresh `python -m fer_edge.edge run --headless --events /dev/null` on the same
video;
the variants take turns round by round, in rotating order, so background load hits them alike;
the median FPS of each (the runtime's own closing line) is reported with its ratio to `plain`:

  plain            no sink flags (the runtime as deployed without MQTT or dashboard)
  mqtt             --mqtt to a Mosquitto this tool starts on a loopback port (or --mqtt URL)
  dashboard        --dashboard on a loopback port, nobody watching
  dashboard_viewed the same with one client on the video and one on the live events
  repo:NAME        `plain` run from another checkout of this project (--compare-repo DIR, as
                   often as wanted; e.g. the commits just before and after a feature's merge),
                   as `python -m edge run` from that checkout's root, with this venv's packages
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from datetime import datetime, timezone
from pathlib import Path

from fer_edge.edge.config import default_model_path

ROOT = Path(__file__).resolve().parents[1]
FPS_LINE = re.compile(r"(\d+) frames, a face in .* ([\d.]+) FPS")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_mosquitto(folder: Path) -> tuple[subprocess.Popen, str]:
    exe = shutil.which("mosquitto") or shutil.which("mosquitto", path="/usr/sbin")
    if not exe:
        raise SystemExit("mosquitto not found: apt-get install -y mosquitto, or pass --mqtt URL")
    port = free_port()
    conf = folder / "mosquitto.conf"
    user = ["user root"] if os.geteuid() == 0 else []
    lines = [*user, f"listener {port} 127.0.0.1", "allow_anonymous true", "persistence false"]
    conf.write_text("\n".join(lines) + "\n")
    proc = subprocess.Popen([exe, "-c", str(conf)], stderr=subprocess.DEVNULL)
    for _ in range(100):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return proc, f"mqtt://127.0.0.1:{port}"
        except OSError:
            time.sleep(0.1)
    proc.terminate()
    raise SystemExit("mosquitto did not start")


def watch(port: int, stop: threading.Event) -> None:
    """One client on the video and one on the events, until `stop` (the dashboard_viewed case)."""

    def read(path: str) -> None:
        while not stop.is_set():
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as r:
                    while not stop.is_set() and r.read(65536):
                        pass
            except OSError:
                time.sleep(0.2)

    for path in ("/video.mjpg", "/events"):
        threading.Thread(target=read, args=(path,), daemon=True).start()


def commit_of(repo: Path) -> str | None:
    """The checkout's commit, with "+changes" when its code differs from it (results, model
    cards, the README and docs/, which `make figures` rewrites as it goes, aside)."""
    git = ["git", "-C", str(repo)]
    head = subprocess.run([*git, "rev-parse", "--short", "HEAD"], capture_output=True, text=True)
    if head.returncode != 0:
        return None
    outputs = [":!benchmarks/results", ":!models/*.card.json", ":!README.md", ":!docs"]
    diff = [*git, "diff", "--quiet", "HEAD", "--", ".", *outputs]
    dirty = subprocess.run(diff, capture_output=True).returncode
    return head.stdout.strip() + ("+changes" if dirty else "")


def run_once(args, variant: str, mqtt_url: str | None) -> dict:
    source, model = str(Path(args.source).resolve()), str(Path(args.model).resolve())
    cmd = [sys.executable, "-m", "fer_edge.edge", "run", "--source", source, "--model", model,
           "--headless", "--events", os.devnull]  # fmt: skip
    if args.frames:
        cmd += ["--max_frames", str(args.frames)]
    stop, port = threading.Event(), free_port()
    if variant == "mqtt":
        cmd += ["--mqtt", mqtt_url, "--mqtt-topic", "fer-edge/bench"]
    if variant.startswith("dashboard"):
        cmd += ["--dashboard", str(port)]
    cwd = ROOT
    if variant.startswith("repo:"):  # every checkout, old or new, runs as `-m edge` from its root
        cwd = Path(args.repos[variant]).resolve()
        cmd[cmd.index("fer_edge.edge")] = "edge"
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    proc = subprocess.Popen(cmd, cwd=cwd, env=env, stderr=subprocess.PIPE, text=True)
    if variant == "dashboard_viewed":
        watch(port, stop)
    _, err = proc.communicate(timeout=3600)
    stop.set()
    match = FPS_LINE.search(err or "")
    if proc.returncode != 0 or not match:
        return {"error": (err or "").strip().splitlines()[-1:] or [f"exit {proc.returncode}"]}
    # CPU time of the run (every thread, start-up included): load from elsewhere on the machine
    # moves it much less than the frame rate
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    frames = int(match.group(1))
    return {"frames": frames, "fps": float(match.group(2)), "cpu_ms_per_frame": 1000 * cpu / frames}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m fer_edge.benchmarks.sinks",
        description=__doc__.splitlines()[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument(
        "--source",
        default=os.environ.get("FER_EDGE_BENCH_VIDEO", ""),
        help="video file every variant plays (default: $FER_EDGE_BENCH_VIDEO)",
    )
    p.add_argument("--model", default=str(default_model_path()), help="TFLite model")
    p.add_argument("--frames", type=int, default=0, help="frames per run (0 = the whole video)")
    p.add_argument("--rounds", type=int, default=3, help="runs per variant, interleaved")
    p.add_argument("--mqtt", default=None, help="broker URL (default: start a local mosquitto)")
    p.add_argument(
        "--variants",
        default="plain,mqtt,dashboard,dashboard_viewed",
        help="comma list of variants (see the module docstring)",
    )
    p.add_argument(
        "--compare-repo",
        action="append",
        default=[],
        metavar="DIR",
        help="another checkout: adds the variant repo:<its folder name> (repeatable)",
    )
    p.add_argument(
        "--out", default=None, help="JSON file (default: benchmarks/results/<machine>-<date>/)"
    )
    args = p.parse_args(argv)
    if not args.source or not Path(args.source).is_file():
        p.error(f"--source {args.source!r}: give a video file (or set FER_EDGE_BENCH_VIDEO)")
    variants = [v.strip() for v in args.variants.split(",") if v.strip()]
    args.repos = {f"repo:{Path(d).resolve().name}": d for d in args.compare_repo}
    variants += list(args.repos)
    with tempfile.TemporaryDirectory() as tmp:
        broker, url = None, args.mqtt
        if "mqtt" in variants and not url:
            broker, url = start_mosquitto(Path(tmp))
        runs: dict[str, list[dict]] = {v: [] for v in variants}
        try:
            for r in range(args.rounds):
                k = r % len(variants)  # rotate the order so no variant always runs first
                for v in variants[k:] + variants[:k]:
                    runs[v].append(run_once(args, v, url))
                    print(f"round {r + 1} {v:17} {runs[v][-1]}", file=sys.stderr)
        finally:
            if broker:
                broker.terminate()
                broker.wait(timeout=10)
    fps = {v: [x["fps"] for x in rs if "fps" in x] for v, rs in runs.items()}
    median = {v: statistics.median(f) if f else None for v, f in fps.items()}
    cpu = {v: [x["cpu_ms_per_frame"] for x in rs if "fps" in x] for v, rs in runs.items()}
    median_cpu = {v: round(statistics.median(c), 3) if c else None for v, c in cpu.items()}
    base = median.get("plain")
    print("| variant | median FPS | runs (FPS) | vs plain |\n|---|---:|---|---:|")
    for v in variants:
        m = median[v]
        ratio = f"{m / base:.3f}" if m and base else "–"
        shown = ", ".join(f"{x:.1f}" for x in fps[v]) or str(runs[v][0].get("error"))
        print(f"| {v} | {m if m is None else f'{m:.1f}'} | {shown} | {ratio} |")
    from fer_edge.benchmarks.system import machine_info, results_dir
    from fer_edge.edge.contract import atomic_write_text

    machine = machine_info()
    out = Path(args.out) if args.out else results_dir(None, machine["slug"]) / "sinks.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    result = {
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": machine,
        "source": args.source,
        "rounds": args.rounds,
        "commit": commit_of(ROOT),
        "repos": {v: {"path": d, "commit": commit_of(Path(d))} for v, d in args.repos.items()},
        "median_fps": median,
        "median_cpu_ms_per_frame": median_cpu,
        "runs": runs,
    }
    atomic_write_text(out, json.dumps(result, indent=2) + "\n")
    print(f"wrote {out}", file=sys.stderr)
    return 0 if all(median.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
