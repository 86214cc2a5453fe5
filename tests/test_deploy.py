"""`make deploy` end to end against a loopback "Pi": a throwaway sshd on 127.0.0.1.

The sshd, its host key and the client key live in a temporary folder; the client checks the
host key against a known_hosts made from it, so host-key checking stays on exactly as for a
real Pi. This machine runs no systemd, so the service steps must be skipped with a message
while the unit files are still verified.
"""

from __future__ import annotations

import getpass
import hashlib
import json
import os
import shutil
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
from conftest import free_port

from deploy.remote import changed_files
from deploy.stage import (
    StageConfig,
    StageError,
    build,
    check_pi_dir,
    edge_requirements,
    resolve_yunet,
)

ROOT = Path(__file__).resolve().parents[1]
VIDEO = ROOT.parent / "shared" / "media" / "face_1zlab_854x480_30fps.mp4"
EVENT_KEYS = {"frame", "t", "track", "box", "label", "probs"}
SYSTEM_TOOLS = ("/usr/sbin/sshd", "ssh", "ssh-keygen", "rsync", "make")


def find_model() -> Path | None:
    """MODEL from the environment, else the default model, else any model with its contract."""
    if os.environ.get("MODEL"):
        model = Path(os.environ["MODEL"])
        model = model if model.is_absolute() else ROOT / model
        if not (model.is_file() and Path(f"{model}.json").is_file()):
            pytest.fail(f"MODEL={os.environ['MODEL']}: no such .tflite with a .json beside it")
        return model
    for model in (ROOT / "models" / "fer_int8.tflite", *sorted((ROOT / "models").glob("*.tflite"))):
        if model.is_file() and Path(f"{model}.json").is_file():
            return model
    return None


def require_model() -> Path:
    model = find_model()
    if model is None:
        pytest.skip("no models/*.tflite with its .json contract; convert one or set MODEL=")
    return model


def require_system_tools() -> None:
    missing = [t for t in SYSTEM_TOOLS if shutil.which(t) is None]
    if missing:
        msg = f"missing {', '.join(missing)}: run deploy/ci-system-deps.sh (as root)"
        if os.environ.get("CI"):
            pytest.fail(msg)  # CI must run this test, not quietly skip it
        pytest.skip(msg)


def keygen(path: Path) -> str:
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "", "-f", str(path)], check=True
    )
    return path.with_suffix(".pub").read_text().strip()


@dataclass(frozen=True)
class Pi:
    target: str  # user@127.0.0.1
    ssh_opts: str  # SSH_OPTS as a user would pass it to make
    port: int
    home: Path  # a folder of ours on the "Pi"; PI_DIRs go inside it

    def ssh(self, command: str, **kw) -> subprocess.CompletedProcess:
        return subprocess.run(
            ["ssh", *self.ssh_opts.split(), "-o", "BatchMode=yes", self.target, command],
            capture_output=True,
            text=True,
            timeout=300,
            **kw,
        )


@pytest.fixture(scope="module")
def pi(tmp_path_factory):
    require_system_tools()
    tmp = tmp_path_factory.mktemp("pi")
    host_pub = keygen(tmp / "host_key")
    (tmp / "authorized_keys").write_text(keygen(tmp / "client_key") + "\n")
    port = free_port()
    known_hosts = tmp / "known_hosts"
    known_hosts.write_text(f"[127.0.0.1]:{port} {host_pub}\n")
    config = tmp / "sshd_config"
    config.write_text(f"""\
ListenAddress 127.0.0.1
Port {port}
HostKey {tmp / "host_key"}
AuthorizedKeysFile {tmp / "authorized_keys"}
PidFile {tmp / "sshd.pid"}
UsePAM no
StrictModes no
PermitRootLogin prohibit-password
PasswordAuthentication no
KbdInteractiveAuthentication no
""")
    if os.geteuid() == 0:
        Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)  # sshd's privilege-separation dir
    log = (tmp / "sshd.log").open("w")
    sshd = subprocess.Popen(
        ["/usr/sbin/sshd", "-D", "-e", "-f", str(config)], stdout=log, stderr=subprocess.STDOUT
    )
    try:
        deadline = time.monotonic() + 15
        while True:
            if sshd.poll() is not None:
                pytest.fail(f"sshd exited {sshd.returncode}: {(tmp / 'sshd.log').read_text()}")
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    pytest.fail("sshd did not listen within 15 s")
                time.sleep(0.1)
        opts = (
            f"-p {port} -i {tmp / 'client_key'} -o UserKnownHostsFile={known_hosts} "
            "-o IdentitiesOnly=yes -F /dev/null"
        )
        yield Pi(f"{getpass.getuser()}@127.0.0.1", opts, port, tmp)
    finally:
        sshd.terminate()
        sshd.wait(timeout=10)
        log.close()


def make(target: str, pi: Pi, pi_dir: Path, model: Path, *extra: str):
    argv = [
        "make",
        "--no-print-directory",
        "-f",
        "deploy/deploy.mk",
        target,
        f"PI={pi.target}",
        f"PI_DIR={pi_dir}",
        f"SSH_OPTS={pi.ssh_opts}",
        f"MODEL={model}",
        f"DEPLOY_PYTHON={sys.executable}",
        *extra,
    ]
    proc = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=600)
    print(proc.stdout, proc.stderr)  # shown by pytest when the test fails
    return proc


def deploy_py(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "deploy", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )


def verify_units(unit_dir: Path, tmp: Path) -> subprocess.CompletedProcess:
    runtime = tmp / "xdg-runtime"
    runtime.mkdir(mode=0o700, exist_ok=True)
    units = ["fer-edge.service", "fer-edge-rotate.service", "fer-edge-rotate.timer"]
    return subprocess.run(
        ["systemd-analyze", "verify", "--user", *units],
        cwd=unit_dir,
        capture_output=True,
        text=True,
        env={**os.environ, "XDG_RUNTIME_DIR": str(runtime)},
    )


@pytest.mark.slow
def test_deploy_loopback(pi, tmp_path):
    model = require_model()
    pi_dir = pi.home / "fer-edge"
    t0 = time.monotonic()

    first = make("deploy", pi, pi_dir, model)
    assert first.returncode == 0, first.stderr
    out = first.stdout
    assert "created .venv" in out and "installed requirements-edge.txt" in out
    assert "service steps skipped: systemd is not running" in out
    assert "units verified" in out or "systemd-analyze not found" in out

    # Only the runtime arrived, with the model's contract and the detector.
    for rel in (
        "fer_edge/edge/__main__.py",
        f"models/{model.name}",
        f"models/{model.name}.json",
        "requirements-edge.txt",
        "Makefile",
        ".deploy/remote.sh",
        ".deploy/fer-edge.service",
        "fer_edge/benchmarks/__main__.py",
    ):
        assert (pi_dir / rel).is_file(), rel
    assert list((pi_dir / "models").glob("face_detection_yunet*.onnx"))
    assert not (pi_dir / "fer_edge" / "benchmarks" / "results").exists()
    for absent in ("train", "convert", "tests", "pyproject.toml", "edge", "fer_edge/cli.py"):
        assert not (pi_dir / absent).exists(), absent
    venv_python = pi_dir / ".venv" / "bin" / "python"
    assert venv_python.exists()
    stamp = pi_dir / ".venv" / ".requirements-edge.sha256"
    stamp_mtime = stamp.stat().st_mtime_ns
    # pip really installed the runtime requirements into the remote venv.
    probe = pi.ssh(f"{venv_python} -c 'import cv2, numpy, ai_edge_litert'")
    assert probe.returncode == 0, probe.stderr
    # The benchmark harness runs there without TensorFlow (its Keras baseline is skipped).
    probe = pi.ssh(f"cd {pi_dir} && {venv_python} -m fer_edge.benchmarks bench --help")
    assert probe.returncode == 0 and "--source" in probe.stdout, probe.stderr

    if shutil.which("systemd-analyze"):
        verified = verify_units(pi_dir / ".deploy", tmp_path)
        assert verified.returncode == 0 and not verified.stderr.strip(), verified.stderr

    # The deployed runtime works, run through the Pi's own Makefile over SSH.
    run = pi.ssh(
        f"cd {pi_dir} && make run SOURCE={VIDEO} MAX_FRAMES=30 RUN_EVENTS=logs/test-events.jsonl"
    )
    assert run.returncode == 0, run.stdout + run.stderr
    assert "--headless" in run.stdout and "--max_frames 30" in run.stdout
    lines = (pi_dir / "logs" / "test-events.jsonl").read_text().splitlines()
    assert lines, "no events: YuNet finds a face in every frame of this video"
    labels = tuple(json.loads(Path(f"{model}.json").read_text())["labels"])
    for line in lines:
        event = json.loads(line)
        assert EVENT_KEYS <= event.keys()
        assert tuple(event["probs"]) == labels and event["label"] in labels
    assert max(json.loads(ln)["frame"] for ln in lines) < 30

    # Nothing changed: nothing transferred, nothing reinstalled, the venv kept.
    inode = venv_python.stat().st_ino
    second = make("deploy", pi, pi_dir, model)
    assert second.returncode == 0, second.stderr
    assert "no files changed: nothing transferred" in second.stdout
    assert "pip install skipped" in second.stdout and "kept .venv" in second.stdout
    assert stamp.stat().st_mtime_ns == stamp_mtime and venv_python.stat().st_ino == inode

    # A change of SOURCE changes exactly the unit and the Pi's Makefile config.
    third = make("deploy", pi, pi_dir, model, "SOURCE=0")
    assert third.returncode == 0, third.stderr
    changed = sorted(ln.strip() for ln in third.stdout.splitlines() if ln.startswith("  updated "))
    assert changed == ["updated .deploy/config.mk", "updated .deploy/fer-edge.service"]
    assert "--source 0 " in (pi_dir / ".deploy" / "fer-edge.service").read_text()
    assert "pip install skipped" in third.stdout

    status = make("deploy-status", pi, pi_dir, model)
    assert status.returncode == 0, status.stderr
    assert "systemd is not running" in status.stdout

    kept = make("undeploy", pi, pi_dir, model)
    assert kept.returncode == 0 and "service steps skipped" in kept.stdout
    assert venv_python.exists()
    purged = make("undeploy", pi, pi_dir, model, "PURGE=1")
    assert purged.returncode == 0, purged.stderr
    assert not pi_dir.exists()
    gone = deploy_py(
        "status", f"--pi={pi.target}", f"--pi_dir={pi_dir}", f"--ssh_opts={pi.ssh_opts}"
    )
    assert gone.returncode == 1 and "nothing deployed" in gone.stderr
    print(f"loopback deploy test: {time.monotonic() - t0:.0f} s")


@pytest.mark.slow
def test_deploy_refuses_foreign_folder(pi):
    model = require_model()
    foreign = pi.home / "not-ours"
    foreign.mkdir()
    (foreign / "precious.txt").write_text("keep me")
    proc = deploy_py(
        "deploy",
        f"--pi={pi.target}",
        f"--pi_dir={foreign}",
        f"--ssh_opts={pi.ssh_opts}",
        f"--model={model}",
    )
    assert proc.returncode == 1
    assert "step 'connect' failed" in proc.stderr and "refusing" in proc.stderr
    assert (foreign / "precious.txt").read_text() == "keep me"


@pytest.mark.slow
@pytest.mark.parametrize("case", ["closed port", "unknown host key"])
def test_deploy_connect_errors_are_one_line(pi, tmp_path, case):
    model = require_model()
    if case == "closed port":
        opts = pi.ssh_opts.replace(f"-p {pi.port}", f"-p {free_port()}")
        expected = "Connection refused"
    else:  # host-key checking is on: an empty known_hosts must stop the deploy
        empty = tmp_path / "empty_known_hosts"
        empty.write_text("")
        opts = pi.ssh_opts.replace(str(pi.home / "known_hosts"), str(empty))
        expected = "Host key verification failed"
    proc = deploy_py(
        "deploy",
        f"--pi={pi.target}",
        f"--pi_dir={tmp_path / 'x'}",
        f"--ssh_opts={opts}",
        f"--model={model}",
    )
    assert proc.returncode == 1
    assert proc.stderr.count("\n") == 1, proc.stderr
    assert proc.stderr.startswith(f"deploy: error: step 'connect' failed: ssh {pi.target}: ")
    assert expected in proc.stderr and "Traceback" not in proc.stderr


@pytest.mark.slow
def test_check_wheels_for_pi_os():
    proc = deploy_py("check-wheels")
    assert proc.returncode == 0, proc.stderr
    for version in ("3.11", "3.13"):
        assert f"Python {version}" in proc.stdout
    for name in ("ai_edge_litert-", "opencv_python_headless-4.", "numpy-"):
        assert proc.stdout.count(name) == 2, proc.stdout
    assert "aarch64" in proc.stdout


# Fast checks of the pieces, no SSH.


def test_requirements_come_from_the_edge_extra():
    reqs = edge_requirements()
    assert any(r.startswith("ai-edge-litert") for r in reqs)
    assert any(r.startswith("opencv-python-headless") and "<5" in r for r in reqs)
    assert len(reqs) == len(set(reqs))
    assert not any("tensorflow" in r for r in reqs)


@pytest.mark.parametrize("bad", ["", ".", "~", "~/", "/", "a/../b", "has space", "x;rm"])
def test_pi_dir_refuses_home_and_odd_paths(bad):
    with pytest.raises(StageError):
        check_pi_dir(bad)


def test_pi_dir_normalised():
    assert check_pi_dir("~/apps/fer-edge/") == "apps/fer-edge"
    assert check_pi_dir("/opt/fer-edge") == "/opt/fer-edge"


def test_changed_files_ignores_attribute_only_updates():
    itemized = [
        ".f..t...... edge/cli.py",
        ".d..t...... ./",
        "<f.st...... models/m.tflite",
        "<f+++++++++ edge/new.py",
        "cd+++++++++ edge/sub/",
        "*deleting   edge/old.py",
    ]
    assert changed_files(itemized) == [
        "updated models/m.tflite",
        "new edge/new.py",
        "deleted edge/old.py",
    ]


def resolve_any_yunet() -> Path:
    try:
        return resolve_yunet(None)
    except StageError as exc:
        pytest.skip(str(exc))


def test_stage_holds_only_the_runtime(tmp_path):
    model = require_model()
    yunet = resolve_any_yunet()
    pi_dir, stage = tmp_path / "pi", tmp_path / "stage"
    build(StageConfig(model=model, yunet=yunet, source="picamera", pi_dir=str(pi_dir)), stage)
    top = sorted(p.name for p in stage.iterdir())
    assert top == [".deploy", "Makefile", "fer_edge", "models", "requirements-edge.txt"]
    assert sorted(p.name for p in (stage / "fer_edge").iterdir()) == [
        "__init__.py",
        "benchmarks",
        "edge",
    ]
    assert not list(stage.rglob("__pycache__"))
    unit = (stage / ".deploy" / "fer-edge.service").read_text()
    assert (
        f"ExecStart={pi_dir}/.venv/bin/python -m fer_edge.edge run --model models/{model.name}"
        in unit
    )
    assert "--headless --events logs/events.jsonl" in unit and "Restart=on-failure" in unit
    if shutil.which("systemd-analyze"):
        # verify checks that ExecStart exists: give it the venv python the Pi would have.
        (pi_dir / ".venv" / "bin").mkdir(parents=True)
        (pi_dir / ".venv" / "bin" / "python").symlink_to(sys.executable)
        shutil.copytree(stage / ".deploy", pi_dir / ".deploy")
        verified = verify_units(pi_dir / ".deploy", tmp_path)
        assert verified.returncode == 0 and not verified.stderr.strip(), verified.stderr


def test_rotate_events_keeps_generations(tmp_path):
    events = tmp_path / "events.jsonl"
    for _ in range(4):
        with events.open("a") as f:  # the runtime appends, so rotation must truncate in place
            f.write('{"frame": 0}\n' * 20)
        subprocess.run(
            ["sh", str(ROOT / "deploy" / "rotate-events.sh"), str(events), "100", "2"],
            check=True,
            capture_output=True,
        )
    assert events.read_text() == ""
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "events.jsonl",
        "events.jsonl.1.gz",
        "events.jsonl.2.gz",
    ]


def test_make_deploy_without_pi_says_how():
    if shutil.which("make") is None:
        pytest.skip("make is not installed")
    proc = subprocess.run(
        ["make", "-s", "-f", "deploy/deploy.mk", "deploy", "PI="]
        + [f"DEPLOY_PYTHON={sys.executable}"],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert proc.returncode != 0
    assert "deploy: error: PI is not set; run: make deploy PI=user@host" in proc.stderr


FAKE_SYSTEMCTL = """#!/bin/sh
echo "systemctl $*" >> "$CALLS"
case "$*" in
    *is-active*) echo active ;;
esac
"""


def test_remote_setup_drives_a_systemd_user_manager(tmp_path):
    """The service branch of remote.sh, against a recording systemctl/loginctl and a private
    /run/systemd/system (a mount namespace), because this machine runs no systemd."""
    model = require_model()
    if subprocess.run(["unshare", "-m", "true"], capture_output=True).returncode != 0:
        pytest.skip("needs `unshare -m` (root) to fake /run/systemd/system")
    pi_dir, home, fake_bin = tmp_path / "pi", tmp_path / "home", tmp_path / "bin"
    build(
        StageConfig(model=model, yunet=resolve_any_yunet(), source="picamera", pi_dir=str(pi_dir)),
        pi_dir,
    )
    # A venv that is already set up, so only the service steps do work.
    (pi_dir / ".venv" / "bin").mkdir(parents=True)
    (pi_dir / ".venv" / "bin" / "python").symlink_to(sys.executable)
    digest = hashlib.sha256((pi_dir / "requirements-edge.txt").read_bytes()).hexdigest()
    (pi_dir / ".venv" / ".requirements-edge.sha256").write_text(digest + "\n")
    fake_bin.mkdir()
    for tool, script in (("systemctl", FAKE_SYSTEMCTL), ("loginctl", FAKE_SYSTEMCTL)):
        (fake_bin / tool).write_text(script.replace("systemctl $*", f"{tool} $*"))
        (fake_bin / tool).chmod(0o755)
    runtime = tmp_path / "xdg-runtime"
    runtime.mkdir(mode=0o700)
    calls = tmp_path / "calls"
    env = {
        **os.environ,
        "PATH": f"{fake_bin}:{os.environ['PATH']}",
        "HOME": str(home),
        "XDG_RUNTIME_DIR": str(runtime),
        "CALLS": str(calls),
    }
    env.pop("XDG_CONFIG_HOME", None)

    def remote(*args: str) -> str:
        script = (
            "mkdir -p /run/systemd && mount -t tmpfs tmpfs /run/systemd && "
            "mkdir /run/systemd/system && exec sh .deploy/remote.sh " + " ".join(args)
        )
        proc = subprocess.run(
            ["unshare", "-m", "sh", "-c", script],
            cwd=pi_dir,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert proc.returncode == 0, proc.stdout + proc.stderr
        return proc.stdout

    out = remote("setup")
    unit_dir = home / ".config" / "systemd" / "user"
    for unit in ("fer-edge.service", "fer-edge-rotate.service", "fer-edge-rotate.timer"):
        assert (unit_dir / unit).read_text() == (pi_dir / ".deploy" / unit).read_text()
    assert "fer-edge.service restarted: active" in out
    assert "skipped" not in out.split("==> service")[1]
    user = getpass.getuser()
    assert calls.read_text().splitlines() == [
        f"loginctl enable-linger {user}",
        "systemctl --user show-environment",
        "systemctl --user daemon-reload",
        "systemctl --user enable --quiet fer-edge.service fer-edge-rotate.timer",
        "systemctl --user start fer-edge-rotate.timer",
        "systemctl --user reset-failed fer-edge.service",
        "systemctl --user restart fer-edge.service",
        "systemctl --user is-active fer-edge.service",
    ]

    calls.unlink()
    again = remote("setup")  # nothing changed: no unit copied, but the service restarts
    assert "installed " not in again and "pip install skipped" in again
    assert "systemctl --user restart fer-edge.service" in calls.read_text()

    calls.unlink()
    gone = remote("undeploy")
    assert (
        "systemctl --user disable --now --quiet fer-edge.service fer-edge-rotate.timer"
        in calls.read_text()
    )
    assert not list(unit_dir.iterdir()) and "kept " in gone and pi_dir.is_dir()
