"""The Pi in the field (issue #17): what the runtime and the service do when things go wrong.

The disk-full tests here run the real `fer-edge run` against /dev/full and against a small
tmpfs that fills up while it writes. The whole-Pi tests further down boot an emulated arm64
Debian under qemu-system-aarch64 with real systemd and deploy to it through `make deploy`.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
from conftest import INT8, ROOT, follow_make_logs, record_pi_figures, run_cli

NO_SPACE = "no space left on device"


def parse_events(path: Path) -> list[dict]:
    """Every line of an events file as JSON; fails on a torn or partial line."""
    data = path.read_bytes()
    assert not data or data.endswith(b"\n"), f"{path} ends in a torn line: {data[-80:]!r}"
    return [json.loads(line) for line in data.decode().splitlines()]


def warnings_about(stderr: str, path: str) -> list[str]:
    return [ln for ln in stderr.splitlines() if "events:" in ln and path in ln]


def test_events_to_dev_full_is_one_line_and_the_runtime_carries_on(video):
    t0 = time.monotonic()
    proc = run_cli(
        "run", "--source", str(video), "--model", str(INT8), "--headless",
        "--events", "/dev/full", "--max-frames", "30",
    )  # fmt: skip
    seconds = time.monotonic() - t0
    print(f"\n/dev/full: exit {proc.returncode} in {seconds:.1f} s; stderr: {proc.stderr[-400:]}")
    assert "Traceback" not in proc.stderr, proc.stderr
    lines = warnings_about(proc.stderr, "/dev/full")
    assert len(lines) == 1 and NO_SPACE in lines[0], proc.stderr
    # The runtime keeps going: all 30 frames are processed and the run ends normally.
    assert proc.returncode == 0, proc.stderr
    assert "30 frames" in proc.stderr, proc.stderr
    figures = {"exit": proc.returncode, "log_lines": len(lines), "frames": 30}
    record_pi_figures("pi_faults.json", ("dev_full",), figures)


def test_events_file_left_torn_by_a_power_cut_is_cut_back_at_start(tmp_path, video):
    """What a power cut leaves (ext4 kept part of the last write) is cut back to the last
    whole line when the runtime starts, so the next line is not glued onto the fragment."""
    events = tmp_path / "events.jsonl"
    whole = '{"frame":7,"t":0.2,"label":"happy"}\n'
    events.write_text(whole * 3 + '{"frame":8,"t":0.3,"tra')
    proc = run_cli(
        "run", "--source", str(video), "--model", str(INT8), "--headless",
        "--events", str(events), "--max-frames", "5",
    )  # fmt: skip
    assert proc.returncode == 0 and "Traceback" not in proc.stderr, proc.stderr
    got = parse_events(events)
    lines = [ln for ln in proc.stderr.splitlines() if "half a line" in ln]
    print(f"\ntorn tail: {lines}; {len(got)} events after the restart")
    assert len(lines) == 1 and "(23 bytes," in lines[0] and str(events) in lines[0]
    assert got[:3] == [json.loads(whole)] * 3 and len(got) > 3 and got[3]["frame"] == 0


def _mount_tmpfs(where: Path, size: str) -> None:
    if os.geteuid() != 0:
        if os.environ.get("CI"):
            pytest.fail("the tmpfs disk-full test needs root (CI runs as root)")
        pytest.skip("mounting a tmpfs needs root")
    where.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(where)], check=True)


def test_events_on_a_disk_that_fills_keep_whole_lines_and_resume(tmp_path, video):
    """A 64 KiB tmpfs, half taken by a filler: the runtime fills the rest, says so once, keeps
    running, and picks up again when the filler is deleted. No line is ever torn."""
    disk = tmp_path / "disk"
    _mount_tmpfs(disk, "64k")
    try:
        filler = disk / "filler"
        filler.write_bytes(b"x" * 32 * 1024)
        events = disk / "events.jsonl"
        argv = [
            sys.executable, "-m", "fer_edge.cli", "run", "--source", str(video),
            "--model", str(INT8), "--headless", "--loop", "--realtime", "--events", str(events),
        ]  # fmt: skip
        env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
        errlog = tmp_path / "stderr.txt"
        with open(errlog, "w") as err:
            proc = subprocess.Popen(argv, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=err)
        try:
            t0 = time.monotonic()
            while NO_SPACE not in errlog.read_text() and time.monotonic() - t0 < 120:
                assert proc.poll() is None, errlog.read_text()
                time.sleep(0.2)
            full_after = time.monotonic() - t0
            assert NO_SPACE in errlog.read_text(), errlog.read_text()
            size_full = events.stat().st_size
            parse_events(events)  # whole lines while the disk is full
            time.sleep(2)  # the runtime keeps going on a full disk
            assert proc.poll() is None, errlog.read_text()
            filler.unlink()  # space returns
            t1 = time.monotonic()
            while "again" not in errlog.read_text() and time.monotonic() - t1 < 30:
                time.sleep(0.1)
            resumed_after = time.monotonic() - t1
            time.sleep(1)
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=30)
        stderr = errlog.read_text()
        lines = warnings_about(stderr, str(events))
        got = parse_events(events)
        frames = [e["frame"] for e in got]
        gap = max(b - a for a, b in zip(frames, frames[1:]))
        print(
            f"\ntmpfs 64 KiB: full after {full_after:.1f} s at {size_full} bytes of events; "
            f"writing again {resumed_after:.1f} s after space returned; {len(got)} events, "
            f"largest frame gap {gap}; log: {lines}"
        )
        assert "Traceback" not in stderr, stderr
        assert len(lines) == 2, stderr  # one line when it fills, one when it is back
        assert NO_SPACE in lines[0] and "again" in lines[1]
        assert events.stat().st_size > size_full  # it did write again
        assert resumed_after < 5
        assert gap > 1  # the frames of the full stretch were dropped, not half-written
        dropped = int(re.search(r"(\d+) events dropped meanwhile", lines[1])[1])
        figures = {"resumed_after_s": round(resumed_after, 2), "dropped": dropped, "torn": 0}
        record_pi_figures("pi_faults.json", ("disk_full",), {**figures, "log_lines": len(lines)})
    finally:
        subprocess.run(["umount", str(disk)], check=False)


# The whole emulated Pi: qemu-system-aarch64, Debian's arm64 kernel, real systemd.

PI_HOME = "/home/pi"
PI_EVENTS = f"{PI_HOME}/fer-edge/logs/events.jsonl"
CAMERA_SHIM = '''\
"""TEST DOUBLE of picamera2 put on this emulated Pi by tests/test_pi_system.py: the "camera"
is the 480p test video, served as a Pi camera's RGB888 main and YUV420 lores streams."""
from pathlib import Path

from picamera2_double import Picamera2 as _Double


class Picamera2(_Double):
    video = Path("/home/pi/media/face_480.mp4")
'''
RESTART_BOUND = 90  # seconds from SIGKILL to new events, on emulated CPUs beside a busy host
BOOT_BOUND = 600  # seconds from power-on (or reboot) to new events


def pi_system_selected() -> None:
    for flag in ("FER_EDGE_SKIP_PI_SYSTEM", "FER_EDGE_SKIP_PI"):
        if os.environ.get(flag) == "1":
            pytest.skip(f"{flag}=1: the whole emulated Pi's tests are skipped")
    from deploy.pi.rootfs import QEMU, EmulatorError, require_root, require_tools
    from deploy.pi.system import QEMU_SYSTEM

    try:
        require_root("the whole emulated Pi")
        require_tools(QEMU_SYSTEM, "qemu-img", "mkfs.ext4", "debootstrap", QEMU, "unshare",
                      "chroot", "ssh", "scp", "ssh-keygen", "rsync", "make")  # fmt: skip
    except EmulatorError as exc:
        if os.environ.get("CI"):
            pytest.fail(str(exc))
        pytest.skip(str(exc))


@pytest.fixture(scope="module")
def pi_system():
    """A booted emulated Pi (Debian Bookworm arm64, systemd, sshd on 127.0.0.1:PORT)."""
    pi_system_selected()
    from deploy.pi.rootfs import pi_os
    from deploy.pi.system import PiSystem, ensure_image, image_meta

    t0 = time.monotonic()
    image = ensure_image(pi_os("bookworm"))
    built = image_meta(image).get("build_seconds")
    how = ("cached, " if time.monotonic() - t0 < 60 else "") + f"built in {built:.0f} s"
    pi = PiSystem(pi_os("bookworm"), hostname="fer-pi-17")
    pi.start()
    print(f"\n[whole Pi] image {image.name}: {how}; boot to SSH login {pi.boot_seconds[0]:.0f} s")
    try:
        yield pi
    finally:
        pi.stop()


def make_pi(pi, *args: str, timeout: float = 1800) -> subprocess.CompletedProcess:
    """The README's command from the project root: `make TARGET PI=... SSH_OPTS=...`."""
    argv = ["make", "--no-print-directory", *args, f"PI={pi.target}", f"SSH_OPTS={pi.ssh_opts}"]
    proc = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=timeout)
    print(f"$ {' '.join(argv[:4])}\n{proc.stdout[-4000:]}{proc.stderr[-2000:]}")
    return proc


def pi_clock(pi) -> float:
    return float(pi.ssh("date +%s.%N").stdout)


def pi_events(pi) -> tuple[list[dict], int, int]:
    """The Pi's events file: (whole lines parsed, torn or unparsable lines, bytes)."""
    raw = pi.ssh(f"cat {PI_EVENTS}", timeout=120).stdout
    events, torn = [], 0
    for line in raw.split("\n")[:-1]:
        try:
            events.append(json.loads(line))
        except ValueError:
            torn += 1
    if raw and not raw.endswith("\n"):
        torn += 1  # the file ends in half a line
    return events, torn, len(raw)


def parse_line(line: str) -> dict | None:
    try:
        return json.loads(line)
    except ValueError:
        return None


def pi_boot_time(pi) -> float:
    """The Pi's clock when its kernel started (now minus /proc/uptime)."""
    out = pi.ssh("date +%s.%N; cut -d' ' -f1 /proc/uptime").stdout.split()
    return float(out[0]) - float(out[1])


def first_event_after(pi, t: float, timeout: float) -> float | None:
    """t_capture of the first event captured after Pi time t, polled for `timeout` seconds."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        out = pi.ssh(f"tail -n 400 {PI_EVENTS} 2>/dev/null", timeout=60).stdout
        later = [e["t_capture"] for e in map(parse_line, out.splitlines())
                 if e and e.get("t_capture", 0) > t]  # fmt: skip
        if later:
            return min(later)
        time.sleep(2)
    return None


def wait_sshd(pi, timeout: float = BOOT_BOUND) -> float:
    """Seconds until the Pi's sshd answers with its banner: no login, so no session starts."""
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        try:
            with socket.create_connection(("127.0.0.1", pi.port), timeout=5) as s:
                s.settimeout(10)
                if s.recv(64).startswith(b"SSH-2.0"):
                    return time.monotonic() - t0
        except OSError:
            pass
        time.sleep(1)
    raise AssertionError(f"no sshd within {timeout} s: {pi.tail()}")


@pytest.mark.slow
def test_whole_pi_deploy_and_faults(pi_system, video, capsys):
    """`make deploy` onto a booted Pi: a systemd user service with linger, events from the
    (test-double) camera, deploy-status and logs through systemd and the journal; then a
    SIGKILL, a reboot and a power cut, each with the service back and no torn line."""
    pi = pi_system

    def report(line: str) -> None:
        with capsys.disabled():
            print(f"\n[whole Pi] {line}", flush=True)

    # The camera: picamera2's test double in pi's user site-packages (the venv is made with
    # --system-site-packages, which keeps the user site visible), serving the 480p video.
    site = f"{PI_HOME}/.local/lib/python3.11/site-packages"
    assert pi.ssh(f"mkdir -p {site} {PI_HOME}/media").returncode == 0
    pi.scp(video, f"{PI_HOME}/media/face_480.mp4")
    pi.scp(ROOT / "tests" / "picamera2_double.py", f"{site}/picamera2_double.py")
    shim = Path(tempfile.mkdtemp()) / "picamera2.py"
    shim.write_text(CAMERA_SHIM)
    pi.scp(shim, f"{site}/picamera2.py")
    shutil.rmtree(shim.parent)

    t0 = time.monotonic()
    deploy = make_pi(pi, "deploy")
    t_deploy = time.monotonic() - t0
    assert deploy.returncode == 0, deploy.stderr
    assert "fer-edge.service restarted: active" in deploy.stdout
    assert "picamera2 importable" in deploy.stdout
    report(f"make deploy (venv + pip on the emulated Pi, service started): {t_deploy:.0f} s")

    # Real systemd: the user unit is active, linger is on, events flow.
    assert pi.ssh("systemctl --user is-active fer-edge").stdout.strip() == "active"
    assert pi.ssh("loginctl show-user pi -p Linger").stdout.strip() == "Linger=yes"
    t_first = first_event_after(pi, 0, timeout=300)
    assert t_first is not None, pi.ssh("journalctl --user -u fer-edge -n 30 --no-pager").stdout
    events, torn, _ = pi_events(pi)
    assert events and torn == 0
    assert {"frame", "label", "probs", "box", "t_capture"} <= events[-1].keys()

    status = make_pi(pi, "deploy-status")
    assert status.returncode == 0, status.stderr
    assert "Active: active (running)" in status.stdout and "is-active: active" in status.stdout
    assert "last events" in status.stdout
    # systemctl status shows the service's journal: the runtime's own log lines are there.
    assert "fer_edge" in status.stdout or "INFO" in status.stdout, status.stdout
    journal = pi.ssh("journalctl --user -u fer-edge --no-pager -n 50").stdout
    assert "Started fer-edge.service" in journal or "fer-edge" in journal, journal
    # the first three events, whole; what arrives after the Ctrl-C may be cut mid-line
    lines = follow_make_logs(pi, events=3)
    seen = [json.loads(ln) for ln in [ln for ln in lines if ln.startswith('{"frame"')][:3]]
    assert len(seen) >= 3
    time.sleep(3)
    assert pi.ssh("pgrep -u pi -x tail").stdout.strip() == ""  # make logs left nothing behind

    # An upgrade whose install fails (a new requirement, and pip may use no index): one line,
    # and the running service is the same process, still writing, on the same release.
    release = pi.ssh(f"readlink {PI_HOME}/fer-edge/current").stdout.strip()
    main_pid = pi.ssh("systemctl --user show -p MainPID --value fer-edge").stdout.strip()
    pip_conf = f"{PI_HOME}/.config/pip/pip.conf"
    assert pi.ssh(f"mkdir -p {PI_HOME}/.config/pip && printf '[global]\\nno-index = true\\n' "
                  f"> {pip_conf}").returncode == 0  # fmt: skip
    t0 = time.monotonic()
    bad = make_pi(pi, "deploy", "MQTT=mqtt://127.0.0.1")
    t_bad = time.monotonic() - t0
    pi.ssh(f"rm -f {pip_conf}")
    errors = [ln for ln in bad.stderr.splitlines() if ln.startswith("deploy:")]
    assert bad.returncode != 0 and len(errors) == 1 and "step 'pip' failed" in errors[0], errors
    t_after = pi_clock(pi)
    assert first_event_after(pi, t_after, timeout=60) is not None  # still writing
    assert pi.ssh("systemctl --user show -p MainPID --value fer-edge").stdout.strip() == main_pid
    assert pi.ssh(f"readlink {PI_HOME}/fer-edge/current").stdout.strip() == release
    report(f"failed upgrade: make deploy failed in {t_bad:.0f} s with one line ({errors[0]}); "
           f"the service kept pid {main_pid} on {release} and kept writing")  # fmt: skip

    rows = []

    # 1. SIGKILL of the runtime: systemd restarts it (Restart=on-failure, RestartSec=5).
    main_pid = pi.ssh("systemctl --user show -p MainPID --value fer-edge").stdout.strip()
    out = pi.ssh(f"wc -l < {PI_EVENTS}; kill -9 {main_pid}; date +%s.%N").stdout.split()
    before, t_kill = int(out[0]), float(out[1])
    t_back = first_event_after(pi, t_kill, timeout=RESTART_BOUND + 60)
    events, torn, _ = pi_events(pi)
    kept = sum(1 for e in events if e["t_capture"] <= t_kill)
    new_pid = pi.ssh("systemctl --user show -p MainPID --value fer-edge").stdout.strip()
    restarts = pi.ssh("systemctl --user show -p NRestarts --value fer-edge").stdout.strip()
    rows.append(("SIGKILL of the runtime", t_back is not None and new_pid != main_pid,
                 t_back - t_kill if t_back else None, max(0, before - kept), torn))  # fmt: skip
    report(f"SIGKILL: pid {main_pid} -> {new_pid}, NRestarts={restarts}, events again after "
           f"{rows[-1][2]:.1f} s; {before} lines before, {kept} kept; torn {torn}")  # fmt: skip

    # 2. A reboot: the service is back with nobody logged in (linger).
    out = pi.ssh(f"wc -l < {PI_EVENTS}; date +%s.%N").stdout.split()
    before, t_reboot = int(out[0]), float(out[1])
    pi.ssh("sudo -n systemctl reboot", timeout=30)
    time.sleep(5)  # sshd goes down first
    sshd_up = wait_sshd(pi)
    time.sleep(60)  # no login meanwhile: the service has to come up by itself
    t_login = time.time()
    t_boot = pi_boot_time(pi)
    t_back = first_event_after(pi, t_boot, timeout=BOOT_BOUND)
    events, torn, _ = pi_events(pi)
    kept = sum(1 for e in events if e["t_capture"] <= t_reboot)
    boot_id = pi.ssh("cat /proc/sys/kernel/random/boot_id").stdout.strip()
    rows.append(("reboot", t_back is not None and t_back < t_login,
                 t_back - t_reboot if t_back else None, max(0, before - kept), torn))  # fmt: skip
    report(f"reboot: kernel up {t_boot - t_reboot:.0f} s after `systemctl reboot`, sshd "
           f"{sshd_up:.0f} s after that; events again {rows[-1][2]:.0f} s after the reboot "
           f"command ({t_back - t_boot:.0f} s after the kernel started), before the first "
           f"login: {t_back is not None and t_back < t_login}; {before} lines before, {kept} "
           f"kept; torn {torn}; boot {boot_id[:8]}")  # fmt: skip

    # An upgrade that succeeds, under systemd: a new release and a new process, the old one
    # kept as `previous` for make rollback. It switches the events to PI_EVENTS_SYNC=0 (each
    # frame's lines on the card before the next frame) for the power cut below.
    t0 = time.monotonic()
    up = make_pi(pi, "deploy", "PI_EVENTS_SYNC=0")
    t_up = time.monotonic() - t0
    assert up.returncode == 0, up.stderr
    upgraded = pi.ssh(f"readlink {PI_HOME}/fer-edge/current").stdout.strip()
    assert upgraded != release
    assert pi.ssh(f"readlink {PI_HOME}/fer-edge/previous").stdout.strip() == release
    start = pi.ssh("systemctl --user show -p ExecStart --value fer-edge").stdout
    assert "--events-sync 0 " in start, start
    assert first_event_after(pi, pi_clock(pi), timeout=RESTART_BOUND) is not None
    report(f"upgrade: make deploy PI_EVENTS_SYNC=0 in {t_up:.0f} s, {release} -> {upgraded}, "
           f"previous = {release}")  # fmt: skip

    # 3. A power cut mid-run: QEMU killed, no shutdown; then power on again.
    time.sleep(15)  # let some events go out after the upgrade
    out = pi.ssh(f"wc -l < {PI_EVENTS}; tail -n 1 {PI_EVENTS}; date +%s.%N").stdout.split("\n")
    before, last_seen, t_cut = int(out[0]), json.loads(out[1]), float(out[2])
    pi.power_cut()
    boot_s = pi.boot(timeout=BOOT_BOUND)  # power on: a new QEMU on the same disk
    t_back = first_event_after(pi, pi_boot_time(pi), timeout=BOOT_BOUND)
    events, torn, size = pi_events(pi)
    journal = pi.ssh("journalctl --user -u fer-edge -b --no-pager").stdout
    cut = [ln.split("ended in ")[1] for ln in journal.splitlines() if "half a line" in ln]
    kept = sum(1 for e in events if e["t_capture"] <= last_seen["t_capture"])
    rows.append(("power cut (QEMU killed) mid-run, PI_EVENTS_SYNC=0",
                 t_back is not None and torn == 0, t_back - t_cut if t_back else None,
                 max(0, before - kept), torn))  # fmt: skip
    report(f"power cut: SSH again {boot_s:.0f} s after power-on, events again "
           f"{rows[-1][2]:.0f} s after the cut; {before} lines seen before the cut, {kept} on "
           f"disk after it ({before - kept} lost); torn tail cut "
           f"back at start: {cut or 'none'}; torn lines now {torn}; {size} bytes")  # fmt: skip

    table = [
        "| fault | survived | recovery | events lost | torn lines |",
        "|---|---|---:|---:|---:|",
    ]
    for fault, ok, rec, lost, torn_lines in rows:
        rec_s = f"{rec:.0f} s" if rec is not None else "never"
        table.append(f"| {fault} | {'yes' if ok else 'no'} | {rec_s} | {lost} | {torn_lines} |")
    report("faults:\n" + "\n".join(table))
    record_pi_figures("pi_faults.json", ("whole_pi",), {
        "boot_to_ssh_s": round(pi.boot_seconds[0]), "deploy_s": round(t_deploy),
        "failed_upgrade_s": round(t_bad), "upgrade_s": round(t_up),
        "rows": [{"fault": f, "survived": ok, "recovery_s": None if r is None else round(r),
                  "lost": lost, "torn": tl} for f, ok, r, lost, tl in rows],
    })  # fmt: skip
    assert all(ok for _, ok, *_ in rows), table
    assert all(torn_lines == 0 for *_, torn_lines in rows), table
    assert rows[0][2] <= RESTART_BOUND and rows[0][3] == 0  # SIGKILL loses nothing written
    assert rows[2][3] == 0  # with PI_EVENTS_SYNC=0 a power cut loses no line written
