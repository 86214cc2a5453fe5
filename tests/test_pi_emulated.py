"""`make deploy` as the README prints it, onto an emulated Raspberry Pi (arm64 under qemu-user).

The Pi is tests/conftest.py's `emulated_pi`: Debian Bookworm (Python 3.11, Raspberry Pi OS
Bookworm's base) and Trixie (Python 3.13), each with its own arm64 sshd on 127.0.0.1 and
host-key checking on. The deployed runtime runs there on aarch64 with pip's aarch64 wheels,
and its events for the first frames of the 480p video are compared with this machine's (x86)
run of the same frames: decoded once, here, and handed to both sides as PNG files. Decoding
the H.264 file on each side does not give the same pixels (the x86 and aarch64 OpenCV wheels'
FFmpeg builds differ on every frame probed), so that comparison is run and reported too, but
it measures the two decoders. There is no systemd in the emulated Pi (nor in this container),
so the service steps are skipped by deploy as on any machine without it, and the test starts
the service's own ExecStart line from the deployed unit, as systemd would, then stops it with
SIGTERM. FER_EDGE_SKIP_PI=1 skips these tests; FER_EDGE_PI_OS=bookworm keeps one OS.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import ROOT, VIDEO_480, follow_make_logs, need, record_pi_figures

from deploy.pi.rootfs import build_meta, tarball
from deploy.stage import edge_requirements

pytestmark = pytest.mark.slow

PI_VIDEO = "/home/pi/media/face_480.mp4"
PI_FRAMES = "/home/pi/media/face_480_frames"  # its first FRAMES frames as decoded here, PNG
PI_DIR = "/home/pi/fer-edge"
CURRENT = f"{PI_DIR}/current"  # the release that runs (deploy/remote.sh)
FRAMES = 90  # the first ~3 s of the video: ~30 s of emulated runtime
AARCH64 = 183  # ELF e_machine of aarch64


def make(*args: str, timeout: float = 1200) -> subprocess.CompletedProcess:
    """`make ARGS` from the project root, as the README prints it."""
    venv = (ROOT / ".venv" / "bin" / "python").exists()
    extra = [] if venv else [f"DEPLOY_PYTHON={sys.executable}"]  # only without the venv
    proc = subprocess.run(
        ["make", "--no-print-directory", *args, *extra],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    print(f"$ make {shlex.join(args)}\n{proc.stdout}{proc.stderr}")  # shown when a test fails
    return proc


def target(pi) -> list[str]:
    return [f"PI={pi.target}", f"SSH_OPTS={pi.ssh_opts}"]


def elf_machine(path: Path) -> int:
    return int.from_bytes(path.read_bytes()[18:20], "little")


def unit_command(unit: str, home: str) -> tuple[str, list[str]]:
    """WorkingDirectory and ExecStart of a unit, with systemd's %h and %% resolved."""
    fields = dict(ln.split("=", 1) for ln in unit.splitlines() if re.match(r"^[A-Za-z]+=", ln))

    def resolve(text: str) -> str:
        return text.replace("%%", "\0").replace("%h", home).replace("\0", "%")

    return resolve(fields["WorkingDirectory"]), shlex.split(resolve(fields["ExecStart"]))


def read_events(path: Path) -> list[dict]:
    return [json.loads(ln) for ln in path.read_text().splitlines()] if path.exists() else []


def write_frames(pi, folder: str) -> None:
    """The first FRAMES frames of the 480p video, decoded by this machine, as lossless PNGs
    in a folder of the Pi's (owned by its pi user): both sides then see the same pixels."""
    import cv2

    out = pi.host_path(folder)
    out.mkdir(parents=True)
    cap = cv2.VideoCapture(str(VIDEO_480))
    for i in range(FRAMES):
        ok, image = cap.read()
        assert ok, f"{VIDEO_480}: only {i} frames"
        assert cv2.imwrite(str(out / f"{i:04d}.png"), image)
    cap.release()
    for path in (out.parent, out, *out.iterdir()):
        os.chown(path, pi.uid, pi.gid)


def run_to_end(pi, workdir: str, argv: list[str], source: str, events: str) -> list[dict]:
    """The unit's command with another source and events file, in the foreground on the Pi;
    a folder of images ends by itself."""
    args = list(argv)
    args[args.index("--source") + 1] = source
    args[args.index("--events") + 1] = events
    proc = pi.ssh(f"cd {workdir} && {shlex.join(args)}", timeout=900)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return read_events(pi.host_path(f"{workdir}/{events}"))


def run_service(pi, workdir: str, argv: list[str]) -> tuple[list[dict], float]:
    """Start the unit's command on the Pi in the background, as systemd would, until its
    events cover FRAMES frames; stop it with SIGTERM; return the events and its FPS."""
    events = pi.host_path(f"{workdir}/logs/events.jsonl")
    log = pi.host_path(f"{workdir}/logs/service.log")
    started = pi.ssh(
        f"cd {workdir} && (PYTHONUNBUFFERED=1 nohup {shlex.join(argv)} "
        "> logs/service.log 2>&1 < /dev/null & echo $!)"
    )
    assert started.returncode == 0, started.stderr
    pid = int(started.stdout.split()[-1])
    deadline, checked = time.monotonic() + 900, time.monotonic()
    while max((e["frame"] for e in read_events(events)), default=-1) < FRAMES - 1:
        text = log.read_text() if log.exists() else ""
        assert time.monotonic() < deadline, f"no {FRAMES} frames in 15 min: {text[-2000:]}"
        if time.monotonic() - checked > 10:  # a crash (even a segfault) ends the wait at once
            assert pi.ssh(f"kill -0 {pid}").returncode == 0, f"the runtime died: {text[-2000:]}"
            checked = time.monotonic()
        time.sleep(1)
    stop = pi.ssh(
        f"kill -TERM {pid}; for i in $(seq 150); do kill -0 {pid} 2>/dev/null || exit 0; "
        "sleep 0.1; done; exit 1"
    )
    assert stop.returncode == 0, "the runtime did not stop within 15 s of SIGTERM"
    text = log.read_text()
    assert "stopping" in text, text  # SIGTERM unwound like Ctrl-C
    fps = float(re.search(r"([\d.]+) FPS", text).group(1))
    return read_events(events), fps


def agreement(pi_events: list[dict], x86_events: list[dict]) -> dict:
    """Same frames, same faces: label agreement, largest probability and box differences."""

    def by_frame(events):
        frames: dict[int, list[dict]] = {}
        for e in events:
            if e["frame"] < FRAMES:
                frames.setdefault(e["frame"], []).append(e)
        return {f: sorted(v, key=lambda e: e["box"][0]) for f, v in frames.items()}

    pi, x86 = by_frame(pi_events), by_frame(x86_events)
    same = missing = 0
    dp = dbox = 0.0
    for frame, faces in x86.items():
        other = pi.get(frame, [])
        if len(other) != len(faces):
            missing += 1
            continue
        same += all(a["label"] == b["label"] for a, b in zip(faces, other))
        for a, b in zip(faces, other):
            dp = max(dp, *(abs(a["probs"][k] - b["probs"][k]) for k in a["probs"]))
            dbox = max(dbox, *(abs(p - q) for p, q in zip(a["box"], b["box"])))
    n = len(x86)
    return {
        "face_frames": n,
        "same": same,
        "share": same / max(1, n),
        "missing": missing,
        "max_dp": dp,
        "max_box": dbox,
    }


def x86_reference(pi, workdir: str, argv: list[str], out: Path, source: Path) -> list[dict]:
    """The same deployed files and flags, run by this machine's Python on the same source."""
    args = argv[argv.index("run") + 1 :]
    args[args.index("--source") + 1] = str(source)
    args[args.index("--events") + 1] = str(out)
    proc = subprocess.run(
        [sys.executable, "-m", "fer_edge.edge", "run", *args, "--max_frames", str(FRAMES)],
        cwd=pi.host_path(workdir),
        env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1"},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    return read_events(out)


def test_make_deploy_to_emulated_pi(emulated_pi, tmp_path, capsys):
    pi = emulated_pi

    def report(line: str) -> None:  # the figures, shown even in a quiet `make test`
        with capsys.disabled():
            print(f"\n[emulated Pi] {line}")

    need(VIDEO_480)
    t_start = time.monotonic()
    copy = pi.ssh(f"mkdir -p {os.path.dirname(PI_VIDEO)}")
    assert copy.returncode == 0, copy.stderr
    scp = subprocess.run(
        [
            "scp",
            "-q",
            "-P",
            str(pi.port),
            "-i",
            str(pi.key),
            "-o",
            f"UserKnownHostsFile={pi.known_hosts}",
            "-o",
            "BatchMode=yes",
            str(VIDEO_480),
            f"{pi.target}:{PI_VIDEO}",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert scp.returncode == 0, scp.stderr

    # 1. The README's command: a venv made on aarch64, pip installing aarch64 wheels there.
    t0 = time.monotonic()
    first = make("deploy", *target(pi), f"SOURCE={PI_VIDEO}")
    t_deploy = time.monotonic() - t0
    assert first.returncode == 0, first.stderr
    out = first.stdout
    assert f"created .venv (Python {pi.os.python}." in out
    assert "installed requirements-edge.txt" in out
    assert "service steps skipped: systemd is not running" in out
    site = next(pi.host_path(f"{CURRENT}/.venv/lib").glob("python3.*/site-packages"))
    assert site.parent.name == f"python{pi.os.python}"
    for dist in ("numpy", "opencv_python_headless", "ai_edge_litert"):
        wheel = next(site.glob(f"{dist}-*.dist-info")) / "WHEEL"
        tags = [ln for ln in wheel.read_text().splitlines() if ln.startswith("Tag:")]
        assert tags and all("aarch64" in t for t in tags), (dist, tags)
    assert elf_machine(next(site.glob("cv2/cv2.abi3.so"))) == AARCH64
    probe = pi.ssh(
        f"cd {CURRENT} && .venv/bin/python -c "
        "'import platform, cv2, ai_edge_litert; print(platform.machine())'"
    )
    assert probe.stdout.strip() == "aarch64", probe.stderr

    # 2. The service's own command line, from the deployed unit, runs on aarch64.
    unit = pi.host_path(f"{CURRENT}/.deploy/fer-edge.service").read_text()
    workdir, argv = unit_command(unit, pi.home)
    assert workdir == CURRENT and argv[argv.index("--source") + 1] == PI_VIDEO
    pi_events, fps = run_service(pi, workdir, argv)
    x86_events = x86_reference(pi, workdir, argv, tmp_path / "x86.jsonl", VIDEO_480)
    decoded = agreement(pi_events, x86_events)

    def figures(agree: dict) -> str:
        return (
            f"{agree['face_frames']} face-frames, same label on {agree['same']} "
            f"({100 * agree['share']:.1f}%), max |dp| {agree['max_dp']:.4f}, "
            f"max box difference {agree['max_box']:.0f} px, missing {agree['missing']}"
        )

    report(
        f"{pi.os.label} aarch64 vs x86, first {FRAMES} frames of {VIDEO_480.name}, each side "
        f"decoding the video itself: {figures(decoded)}; runtime {fps:.1f} FPS (EMULATED)"
    )
    # The same pixels on both sides: the runtime itself must agree across architectures.
    write_frames(pi, PI_FRAMES)
    pi_same = run_to_end(pi, workdir, argv, PI_FRAMES, "logs/frames.jsonl")
    x86_same = x86_reference(
        pi, workdir, argv, tmp_path / "x86-frames.jsonl", pi.host_path(PI_FRAMES)
    )
    agree = agreement(pi_same, x86_same)
    report(
        f"{pi.os.label} aarch64 vs x86, the same {FRAMES} decoded frames (PNG): {figures(agree)}"
    )
    assert agree["face_frames"] >= FRAMES * 0.9  # YuNet finds the face in nearly every frame
    # The bar, on the same pixels: same label on >= 98% of face-frames, probabilities
    # within 0.05, boxes within a few pixels.
    assert agree["missing"] == 0
    assert agree["share"] >= 0.98 and agree["max_dp"] <= 0.05 and agree["max_box"] <= 4, agree
    # Each side decoding the H.264 file: a broken aarch64 build (wrong wheels, wrong
    # preprocessing) is far outside these; decoder differences are not.
    assert decoded["missing"] == 0 and decoded["share"] >= 0.9
    assert decoded["max_dp"] <= 0.3 and decoded["max_box"] <= 20, decoded

    # 3. Nothing changed: nothing transferred, nothing installed, the venv kept.
    again = make("deploy", *target(pi), f"SOURCE={PI_VIDEO}")
    assert again.returncode == 0, again.stderr
    assert "no files changed: nothing transferred" in again.stdout
    assert "pip install skipped" in again.stdout and "kept .venv" in again.stdout

    # 4. Status and (bounded) logs show the service's events.
    status = make("deploy-status", *target(pi))
    assert status.returncode == 0, status.stderr
    assert "systemd is not running" in status.stdout and "last events (" in status.stdout
    lines = follow_make_logs(pi)
    assert any(ln.startswith("following ") for ln in lines), lines
    deadline = time.monotonic() + 20
    while any(name == "tail" for _, name in pi.processes()):  # Ctrl-C ends the remote tail
        assert time.monotonic() < deadline, f"tail lingers on the Pi: {pi.processes()}"
        time.sleep(0.2)

    # 5. The benchmark harness runs there, its numbers labelled emulated.
    bench = pi.ssh(
        f"cd {CURRENT} && make bench BENCH_ARGS='--frames 5 --warmup 2 --baseline_frames 0 "
        "--configs default --modes pipeline'",
        timeout=900,
    )
    assert bench.returncode == 0, bench.stdout + bench.stderr
    assert f"bench: EMULATED Pi (qemu-user {pi.cpu}" in bench.stdout
    result = next(pi.host_path(f"{CURRENT}/benchmarks/results/emulated").glob("*/pipeline.json"))
    assert result.parent.name.startswith(f"emulated-{pi.cpu}-qemu-user-")  # the slug says so
    measured = json.loads(result.read_text())
    assert measured["machine"]["arch"] == "aarch64"
    bench_fps = measured["configs"]["default"]["fps"]
    report(f"{pi.os.label}: make bench there, 5 frames: {bench_fps:.1f} FPS (EMULATED)")

    # 6. MQTT and dashboard reach the service's command line; the password only a 0600 file.
    secret = tmp_path / "mqtt-password"
    secret.write_text("s3cret-for-test\n")
    mqtt = make(
        "deploy",
        *target(pi),
        f"SOURCE={PI_VIDEO}",
        "MQTT=mqtt://fer@broker.local:1883",
        f"MQTT_PASSWORD_FILE={secret}",
        "DASHBOARD=8080",
    )
    assert mqtt.returncode == 0, mqtt.stderr
    if edge_requirements(mqtt=True) != edge_requirements():  # pyproject has an `mqtt` extra
        assert "installed requirements-edge.txt" in mqtt.stdout
        client = pi.ssh(f"{CURRENT}/.venv/bin/python -c 'import paho.mqtt.client'")
        assert client.returncode == 0, client.stderr
    else:
        assert "pip install skipped" in mqtt.stdout
    unit = pi.host_path(f"{CURRENT}/.deploy/fer-edge.service").read_text()
    _, argv = unit_command(unit, pi.home)
    assert argv[-6:] == [
        "--mqtt",
        "mqtt://fer@broker.local:1883",
        "--mqtt-password-file",
        ".deploy/mqtt-password",
        "--dashboard",
        "8080",
    ]
    on_pi = pi.host_path(f"{CURRENT}/.deploy/mqtt-password")
    st = on_pi.stat()
    assert oct(st.st_mode & 0o777) == "0o600" and st.st_uid == pi.uid
    assert on_pi.read_text() == "s3cret-for-test\n"
    assert "s3cret" not in unit and "s3cret" not in mqtt.stdout + mqtt.stderr
    plain = make("deploy", *target(pi), f"SOURCE={PI_VIDEO}")
    assert plain.returncode == 0 and not on_pi.exists()
    assert result.is_file(), "a redeploy deleted the Pi's benchmark results"
    assert "--mqtt" not in pi.host_path(f"{CURRENT}/.deploy/fer-edge.service").read_text()

    # 7. Undeploy with PURGE=1 removes everything deploy put there.
    purged = make("undeploy", *target(pi), "PURGE=1")
    assert purged.returncode == 0, purged.stderr
    assert not pi.host_path(PI_DIR).exists()
    built = build_meta(tarball(pi.os)).get("build_seconds")
    built_text = f"{built:.0f} s" if built else "not recorded"
    took = time.monotonic() - t_start
    report(
        f"{pi.os.label}: rootfs build {built_text}, first deploy "
        f"{t_deploy:.0f} s, this test {took:.0f} s"
    )
    record_pi_figures(
        "emulated_pi.json",
        ("os", pi.os.suite),
        {"label": pi.os.label, "rootfs_build_s": built, "same": agree, "decoded": decoded,
         "fps": fps, "deploy_s": t_deploy, "test_s": took},
    )  # fmt: skip


def test_emulated_pi_stops_cleanly(capsys):
    """A second emulated Pi with processes left running inside: stop() ends them all, and no
    mount or file of it remains."""
    from conftest import pi_os_selected

    from deploy.pi.emulator import EmulatedPi
    from deploy.pi.rootfs import pi_os

    pi_os_selected("bookworm")
    t0 = time.monotonic()
    pi = EmulatedPi(pi_os("bookworm")).start()
    try:
        bg = pi.ssh("nohup sleep 600 >/dev/null 2>&1 & nohup tail -F /dev/null >/dev/null 2>&1 &")
        assert bg.returncode == 0, bg.stderr
        deadline = time.monotonic() + 20
        while not {"sshd", "sleep", "tail"} <= {name for _, name in pi.processes()}:
            assert time.monotonic() < deadline, pi.processes()
            time.sleep(0.2)
        assert not pi.mounts()  # its mounts exist only in its own mount namespace
        where = pi.dir
    finally:
        pi.stop()
    assert pi.processes() == [] and pi.mounts() == [] and not where.exists()
    with capsys.disabled():
        print(f"\n[emulated Pi] up, used and stopped cleanly in {time.monotonic() - t0:.0f} s")
