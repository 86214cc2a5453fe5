"""Shared fixtures: real FER2013 files, real videos, the shipped models. Nothing is mocked."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
ARCHIVE = SHARED / "datasets" / "fer2013" / "archive.zip"
VIDEO_480 = SHARED / "media" / "face_1zlab_854x480_30fps.mp4"
VIDEO_720 = SHARED / "media" / "obama_face2face-demo_1280x720_30fps.mp4"
MODELS = ROOT / "models"
# The packaged YuNet: the same bytes (sha256 ebafce4e...) as shared/models/
# face_detection_yunet_2026may.onnx, which not every machine's shared/ holds.
YUNET = MODELS / "face_detection_yunet.onnx"
INT8 = MODELS / "fer_int8.tflite"
FLOAT32 = MODELS / "fer_float32.tflite"
KERAS = MODELS / "fer_pair.h5"  # the Keras source of the default int8 model


def need(path: Path) -> Path:
    """The file, or a failure naming it and how to get it.

    Never a skip: shared data and models are inputs every machine (a developer's, CI's) has, so
    a missing one must show up as a failure, not as a quiet run of fewer tests. Hardware that
    cannot exist here (a camera, a Pi) is skipped by the `hardware` marker instead."""
    if path.exists():
        return path
    if path.is_relative_to(SHARED):
        where = f"shared data: copy it into {SHARED}"
    elif path.is_relative_to(MODELS):
        where = "a model of the repository: `git checkout -- models/`, or `make convert`"
    else:
        where = "a test input"
    pytest.fail(f"missing test input {path} ({where})", pytrace=False)


@pytest.fixture(scope="session")
def archive() -> Path:
    return need(ARCHIVE)


@pytest.fixture(scope="session")
def video() -> Path:
    return need(VIDEO_480)


@pytest.fixture(scope="session")
def first_frame(video):
    """The first frame of the 480p test video (one face, about 196 px wide)."""
    import contextlib

    from fer_edge.edge.sources import open_source

    with open_source(str(video)) as src, contextlib.closing(src.frames()) as frames:
        return next(frames)


@pytest.fixture(scope="session")
def int8_model() -> Path:
    return need(INT8)


@pytest.fixture(scope="session")
def float_model() -> Path:
    return need(FLOAT32)


@pytest.fixture(scope="session")
def small_archive(tmp_path_factory, archive) -> Path:
    """A real subset of FER2013 in Kaggle's layout: 6 images per class and split."""
    out = tmp_path_factory.mktemp("fer") / "small.zip"
    taken: dict[tuple[str, str, str], int] = {}
    with zipfile.ZipFile(archive) as src, zipfile.ZipFile(out, "w") as dst:
        for name in src.namelist():
            top, cls, fname = name.split("/")
            key = (top, cls, fname.split("_")[0])
            if taken.get(key, 0) < 6:
                taken[key] = taken.get(key, 0) + 1
                dst.writestr(name, src.read(name))
    return out


def run_cli(*args: str, env: dict | None = None, timeout: int = 300) -> subprocess.CompletedProcess:
    """Run `fer-edge` as a user would, in a fresh interpreter."""
    full_env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", **(env or {}))
    return subprocess.run(
        [sys.executable, "-m", "fer_edge.cli", *args],
        cwd=ROOT,
        env=full_env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def system_tool(*names: str, package: str) -> str:
    """A Debian tool a test needs (the first of `names` found): missing fails in CI, where
    .ci/run installs `package`, and skips elsewhere."""
    for name in names:
        path = shutil.which(name) or shutil.which(name, path="/usr/sbin:/usr/bin")
        if path:
            return path
    message = f"{names[0]} not installed (apt-get install -y {package})"
    if os.environ.get("CI"):
        pytest.fail(message)
    pytest.skip(message)


def run_events(video, model, events: Path, *flags: str) -> tuple[subprocess.CompletedProcess, list]:
    """`fer-edge run` headless on a video with an events file: the process and its events."""
    proc = run_cli(
        "run", "--source", str(video), "--model", str(model), "--headless",
        "--events", str(events), *flags,
    )  # fmt: skip
    lines = events.read_text().splitlines() if events.exists() else []
    return proc, [json.loads(line) for line in lines]


def one_line_error(proc: subprocess.CompletedProcess) -> str:
    """The single error line a failed command printed (asserting there is no traceback)."""
    assert proc.returncode != 0, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr, proc.stderr
    lines = [ln for ln in proc.stderr.splitlines() if "error:" in ln]
    assert len(lines) == 1, proc.stderr
    return lines[0]


@pytest.fixture(scope="session")
def keras_model() -> Path:
    return need(KERAS)


@pytest.fixture(scope="session")
def smoke_training(tmp_path_factory, archive):
    """A one-epoch stage-1 run on a small real subset, through the CLI as a user runs it."""
    out = tmp_path_factory.mktemp("smoke_train")
    proc = run_cli(
        "train",
        "--data",
        str(archive),
        "--out",
        str(out),
        "--name",
        "smoke",
        "--max-train",
        "400",
        "--max-val",
        "150",
        "--epochs",
        "1",
        "--batch-size",
        "32",
        # one view at test time: the smoke run still evaluates all 6,043 test faces
        "--tta",
        "none",
        timeout=240,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return out, proc


def record_pi_figures(filename: str, keys: tuple[str, ...], figures: dict) -> None:
    """FER_EDGE_PI_FIGURES=1 (`make figures`, `make pi-faults`): put a test's figures at
    data[keys[0]][keys[1]]... of FILENAME in this machine's results folder, which the docs'
    tables are rendered from (make readme). Other keys of the file are kept."""
    if os.environ.get("FER_EDGE_PI_FIGURES") != "1":
        return
    from datetime import datetime, timezone

    from fer_edge.benchmarks.system import machine_info, results_dir
    from fer_edge.edge.fileio import atomic_write_text

    machine = machine_info()
    path = results_dir(None, machine["slug"]) / filename
    path.parent.mkdir(parents=True, exist_ok=True)
    data = json.loads(path.read_text()) if path.is_file() else {}
    data.update(created=datetime.now(timezone.utc).isoformat(timespec="seconds"), machine=machine)
    node = data
    for key in keys[:-1]:
        node = node.setdefault(key, {})
    node[keys[-1]] = figures
    atomic_write_text(path, json.dumps(data, indent=2) + "\n")


def pi_os_selected(name: str) -> None:
    """Skip (fail in CI) unless the emulated Pi can run here and is wanted.

    FER_EDGE_SKIP_PI=1 skips every emulated-Pi test; FER_EDGE_PI_OS=bookworm keeps one OS."""
    if os.environ.get("FER_EDGE_SKIP_PI") == "1":
        pytest.skip("FER_EDGE_SKIP_PI=1: emulated-Pi tests skipped")
    wanted = os.environ.get("FER_EDGE_PI_OS", "")
    if wanted and name not in wanted.split(","):
        pytest.skip(f"FER_EDGE_PI_OS={wanted}: {name} not selected")
    from deploy.pi.rootfs import QEMU, EmulatorError, require_root, require_tools

    try:
        require_root("the emulated Pi")
        require_tools("debootstrap", QEMU, "unshare", "chroot", "ssh", "ssh-keygen", "rsync")
    except EmulatorError as exc:
        if os.environ.get("CI"):
            pytest.fail(str(exc))  # CI must run these tests, not quietly skip them
        pytest.skip(str(exc))


@pytest.fixture(scope="session", params=["bookworm", "trixie"])
def emulated_pi(request):
    """A fresh emulated Raspberry Pi (deploy/pi: an arm64 Pi OS userland under qemu-user)
    with its own arm64 sshd on 127.0.0.1, a `pi` user and a key; host-key checking on.

    Builds the rootfs on first use (~5 min, then cached by recipe). After the tests it stops
    and must leave no process and no mount behind."""
    import time

    from deploy.pi.emulator import EmulatedPi
    from deploy.pi.rootfs import build_meta, ensure_rootfs, pi_os

    pi_os_selected(request.param)
    t0 = time.monotonic()
    tar = ensure_rootfs(pi_os(request.param))
    built = build_meta(tar).get("build_seconds")
    t1 = time.monotonic()
    pi = EmulatedPi(pi_os(request.param)).start()
    how = "cached" if t1 - t0 < 60 else "built now"
    took = f", build took {built:.0f} s" if built else ""
    print(f"\nemulated Pi {pi.os.label}: rootfs {tar.name} ({how}{took}), ", end="")
    print(f"up in {time.monotonic() - t1:.0f} s")
    try:
        yield pi
    finally:
        pi.stop()
        assert not pi.processes() and not pi.mounts() and not pi.dir.exists()


def follow_make_logs(pi, events: int = 1, timeout: float = 120) -> list[str]:
    """`make logs PI=...` until it has shown `events` event lines, then Ctrl-C (SIGINT to its
    process group) as a user would; its output lines. `pi` has .target and .ssh_opts."""
    proc = subprocess.Popen(
        ["make", "--no-print-directory", "logs", f"PI={pi.target}", f"SSH_OPTS={pi.ssh_opts}"],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
        # pytest run as a background job (nohup, CI) inherits SIGINT ignored, and so would make,
        # the deploy helper and ssh: Ctrl-C must reach `make logs` as from a terminal
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    lines: list[str] = []
    enough = threading.Event()

    def read():
        for line in proc.stdout:
            lines.append(line.rstrip())
            if sum(ln.startswith('{"frame"') for ln in lines) >= events:
                enough.set()

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        assert enough.wait(timeout), "\n".join(lines)
    finally:
        os.killpg(proc.pid, signal.SIGINT)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            raise
        reader.join(5)
    return lines


def free_port() -> int:
    """A free TCP port on 127.0.0.1 for a server a test starts."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(condition, timeout: float = 20.0, what: str = "condition"):
    """condition()'s first truthy value, polled until `timeout` seconds, or an AssertionError."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        value = condition()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")
