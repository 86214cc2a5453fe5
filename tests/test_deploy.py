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
import signal
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
AuthorizedKeysFile {tmp / "authorized_keys"} .ssh/authorized_keys
PidFile {tmp / "sshd.pid"}
UsePAM no
StrictModes no
PermitRootLogin prohibit-password
PasswordAuthentication no
KbdInteractiveAuthentication no
# The upgrade test sets pip's options for one deploy with ssh -o SetEnv=PIP_...
AcceptEnv PIP_*
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

    # Only the runtime arrived, with the model's contract and the detector, as a release that
    # `current` points at.
    release = pi_dir / "current"
    assert os.readlink(release).startswith("releases/")
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
        assert (release / rel).is_file(), rel
    assert list((release / "models").glob("face_detection_yunet*.onnx"))
    assert not (release / "fer_edge" / "benchmarks" / "results").exists()
    for absent in ("train", "convert", "tests", "pyproject.toml", "edge", "fer_edge/cli.py"):
        assert not (release / absent).exists(), absent
    venv_python = release / ".venv" / "bin" / "python"
    assert venv_python.exists() and os.readlink(release / ".venv").startswith("../../venvs/")
    stamp = release / ".venv" / ".requirements-edge.sha256"
    stamp_mtime = stamp.stat().st_mtime_ns
    # pip really installed the runtime requirements into the remote venv.
    probe = pi.ssh(f"{venv_python} -c 'import cv2, numpy, ai_edge_litert'")
    assert probe.returncode == 0, probe.stderr
    # The benchmark harness runs there without TensorFlow (its Keras baseline is skipped).
    probe = pi.ssh(f"cd {release} && {venv_python} -m fer_edge.benchmarks bench --help")
    assert probe.returncode == 0 and "--source" in probe.stdout, probe.stderr

    if shutil.which("systemd-analyze"):
        verified = verify_units(release / ".deploy", tmp_path)
        assert verified.returncode == 0 and not verified.stderr.strip(), verified.stderr

    # The deployed runtime works, run through the Pi's own Makefile over SSH.
    run = pi.ssh(
        f"cd {release} && make run SOURCE={VIDEO} MAX_FRAMES=30 RUN_EVENTS=logs/test-events.jsonl"
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
    first_release = os.readlink(release)
    second = make("deploy", pi, pi_dir, model)
    assert second.returncode == 0, second.stderr
    assert "no files changed: nothing transferred" in second.stdout
    assert "pip install skipped" in second.stdout and "kept .venv" in second.stdout
    assert stamp.stat().st_mtime_ns == stamp_mtime and venv_python.stat().st_ino == inode

    # A change of SOURCE changes exactly the unit and the Pi's Makefile config.
    third = make("deploy", pi, pi_dir, model, "SOURCE=0")
    assert third.returncode == 0, third.stderr
    # (fer_edge/ is left out: in a shared checkout someone may edit the code meanwhile.)
    changed = sorted(
        ln.strip()
        for ln in third.stdout.splitlines()
        if ln.startswith("  updated ") and not ln.startswith("  updated fer_edge/")
    )
    assert changed == ["updated .deploy/config.mk", "updated .deploy/fer-edge.service"]
    assert "--source 0 " in (release / ".deploy" / "fer-edge.service").read_text()
    # A new release, and the one before it is kept for `make rollback`.
    assert os.readlink(pi_dir / "previous") == first_release != os.readlink(release)
    back = make("rollback", pi, pi_dir, model)
    assert back.returncode == 0, back.stderr
    assert (
        os.readlink(release) == first_release
        and "--source picamera " in (release / ".deploy" / "fer-edge.service").read_text()
    )
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
        "cf..t...... requirements-edge.txt",
        "created directory fer-edge/releases/0123abcd.part",
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
        "evaluation",
    ]
    assert not list(stage.rglob("__pycache__"))
    unit = (stage / ".deploy" / "fer-edge.service").read_text()
    python = f"{pi_dir}/current/.venv/bin/python"
    assert f"ExecStart={python} -m fer_edge.edge run --model models/{model.name}" in unit
    assert "--headless --events logs/events.jsonl" in unit and "Restart=on-failure" in unit
    if shutil.which("systemd-analyze"):
        # verify checks that ExecStart exists: give it the venv python the Pi would have.
        (pi_dir / "current" / ".venv" / "bin").mkdir(parents=True)
        (pi_dir / "current" / ".venv" / "bin" / "python").symlink_to(sys.executable)
        shutil.copytree(stage / ".deploy", pi_dir / "current" / ".deploy")
        verified = verify_units(pi_dir / "current" / ".deploy", tmp_path)
        assert verified.returncode == 0 and not verified.stderr.strip(), verified.stderr


def test_deploy_stages_the_documented_service_with_and_without_options(tmp_path, capsys):
    """What `make deploy PI=pi@host` ships when nothing else is given (docs/raspberry-pi.md):
    the default model, the Pi camera, in ~/fer-edge, events synced every second, no MQTT and
    no dashboard. Through the deploy tool's own command line, in this process."""
    from deploy.deploy import main

    model = require_model()
    assert main(["stage", "--out", str(tmp_path / "stage")]) == 0
    assert f"staged into {tmp_path / 'stage'}" in capsys.readouterr().out
    unit = (tmp_path / "stage" / ".deploy" / "fer-edge.service").read_text()
    start = next(ln for ln in unit.splitlines() if ln.startswith("ExecStart="))
    python = "%h/fer-edge/current/.venv/bin/python"
    assert start.startswith(f"ExecStart={python} -m fer_edge.edge run "), start
    argv = start.split()
    assert argv[argv.index("--model") + 1] == f"models/{model.name}"
    assert argv[argv.index("--source") + 1] == "picamera"
    assert not {"--mqtt", "--dashboard", "--events-sync"} & set(argv), start
    assert argv[argv.index("--yunet_model") + 1] == "models/face_detection_yunet.onnx"
    assert (tmp_path / "stage" / "models" / model.name).is_file()

    # every option reaches the unit; the password travels as a mode-600 file, never argv
    password = tmp_path / "pw"
    password.write_text("s3cret-password\n")
    assert main(["stage", "--out", str(tmp_path / "s2"), "--source", "0", "--pi_dir", "apps/fer",
                 "--mqtt", "mqtt://ha@broker.local:1884", "--mqtt-password-file", str(password),
                 "--dashboard", "8088", "--events_sync", "0"]) == 0  # fmt: skip
    deploy = tmp_path / "s2" / ".deploy"
    start = next(ln for ln in (deploy / "fer-edge.service").read_text().splitlines()
                 if ln.startswith("ExecStart="))  # fmt: skip
    assert start.startswith("ExecStart=%h/apps/fer/current/.venv/bin/python -m fer_edge.edge run")
    assert start.endswith(
        " --source 0 --headless --events logs/events.jsonl --mqtt mqtt://ha@broker.local:1884 "
        "--mqtt-password-file .deploy/mqtt-password --dashboard 8088 --events-sync 0"
    ), start
    assert "s3cret" not in start
    assert (deploy / "mqtt-password").read_text().strip() == "s3cret-password"
    assert (deploy / "mqtt-password").stat().st_mode & 0o777 == 0o600


@pytest.mark.parametrize(
    "target, variables, command, expected",
    [
        ("deploy", ["SOURCE=0", "MQTT=mqtt://ha@b:1884", "DASHBOARD=8080", "PI_EVENTS_SYNC=0"],
         "cmd_deploy", {"source": "0", "mqtt": "mqtt://ha@b:1884", "dashboard": "8080",
                        "events_sync": "0"}),
        ("deploy", [], "cmd_deploy", {"source": "picamera", "mqtt": "", "dashboard": None}),
        ("deploy-status", [], "cmd_status", {}),
        ("logs", [], "cmd_logs", {"journal": False}),
        ("rollback", [], "cmd_rollback", {}),
        ("undeploy", [], "cmd_undeploy", {"purge": False}),
        ("undeploy", ["PURGE=1"], "cmd_undeploy", {"purge": True}),
    ],
)  # fmt: skip
def test_each_make_target_runs_its_deploy_command(target, variables, command, expected):
    """What `make TARGET PI=... SSH_OPTS=...` runs (make -n, from the project root) is parsed
    by the deploy tool into the right command with the user's values; nothing is executed."""
    import shlex

    from deploy import deploy

    out = subprocess.run(
        ["make", "-n", "--no-print-directory", target, "PI=pi@a pi@b", "SSH_OPTS=-p 2222",
         "PI_DIR=apps/fer", *variables],
        cwd=ROOT, capture_output=True, text=True, check=True,
    ).stdout.replace("\\\n", " ")  # fmt: skip
    line = next(ln for ln in out.splitlines() if " -m deploy " in ln)
    argv = shlex.split(line.split(" -m deploy ", 1)[1])
    args = deploy.build_parser().parse_args(argv)
    assert args.func is getattr(deploy, command)
    assert (args.pi, args.ssh_opts, args.pi_dir) == ("pi@a pi@b", "-p 2222", "apps/fer")
    assert {k: getattr(args, k) for k in expected} == expected


def test_a_stage_that_cannot_be_built_is_one_line_naming_the_step(tmp_path, capsys):
    from deploy.deploy import main

    assert main(["stage", "--out", str(tmp_path / "s"), "--source", "my camera"]) != 0
    err = capsys.readouterr().err.strip()
    assert err.startswith("deploy: error: step 'stage' failed: SOURCE='my camera': give "), err
    assert len(err.splitlines()) == 1 and not (tmp_path / "s").exists()
    with pytest.raises(SystemExit):  # --out is required
        main(["stage"])
    assert "--out" in capsys.readouterr().err


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
    root, home, fake_bin = tmp_path / "pi", tmp_path / "home", tmp_path / "bin"
    pi_dir = root / "releases" / "r1"  # a release as deploy transfers it
    build(
        StageConfig(model=model, yunet=resolve_any_yunet(), source="picamera", pi_dir=str(root)),
        pi_dir,
    )
    # A venv that is already set up, so only the service steps do work: remote.sh's key.
    key = subprocess.run(
        "(cat requirements-edge.txt; python3 -V 2>&1) | sha256sum | cut -c1-12",
        shell=True, cwd=pi_dir, capture_output=True, text=True, check=True,
    ).stdout.strip()  # fmt: skip
    venv = root / "venvs" / key
    (venv / "bin").mkdir(parents=True)
    (venv / "bin" / "python").symlink_to(sys.executable)
    digest = hashlib.sha256((pi_dir / "requirements-edge.txt").read_bytes()).hexdigest()
    (venv / ".requirements-edge.sha256").write_text(digest + "\n")
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
        "FER_EDGE_ROOT": str(root),
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

    out = remote("setup", "r1")
    assert os.readlink(root / "current") == "releases/r1"
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
    again = remote("setup", "r1")  # nothing changed: no unit copied, but the service restarts
    assert "installed " not in again and "pip install skipped" in again
    assert "systemctl --user restart fer-edge.service" in calls.read_text()

    calls.unlink()
    gone = remote("undeploy")
    assert (
        "systemctl --user disable --now --quiet fer-edge.service fer-edge-rotate.timer"
        in calls.read_text()
    )
    assert not list(unit_dir.iterdir()) and "kept " in gone and root.is_dir()


@pytest.fixture
def second_user(pi):
    """A second account on the loopback "Pi", so two targets have two homes (two Pis)."""
    if os.geteuid() != 0:
        if os.environ.get("CI"):
            pytest.fail("the several-Pis test needs root to add a user (CI runs as root)")
        pytest.skip("adding a second user needs root")
    name = f"ferpi{os.getpid() % 100000}"
    subprocess.run(["useradd", "--create-home", "--shell", "/bin/sh", name], check=True)
    subprocess.run(["usermod", "--password", "*", name], check=True)  # key login, no password
    # The loopback sshd's own keys file is in root's temporary folder, which this user cannot
    # read; its ~/.ssh/authorized_keys (the fixture's second AuthorizedKeysFile) can be.
    keys = Path(f"/home/{name}/.ssh/authorized_keys")
    keys.parent.mkdir(mode=0o700)
    keys.write_text(Path(pi.home / "authorized_keys").read_text())
    subprocess.run(["chown", "-R", f"{name}:{name}", str(keys.parent)], check=True)
    try:
        yield name
    finally:
        subprocess.run(["userdel", "--remove", name], capture_output=True)


@pytest.mark.slow
def test_deploy_to_several_pis_in_parallel(pi, tmp_path, second_user):
    """PI="a b dead": two Pis deploy at once, the unreachable one fails alone, one summary
    line per Pi, exit status 1. Hosts come from an ssh config, as for a real fleet."""
    model = require_model()
    me = getpass.getuser()
    config = tmp_path / "ssh_config"
    config.write_text(f"""\
Host pi-a
    HostName 127.0.0.1
    Port {pi.port}
    User {me}
Host pi-b
    HostName 127.0.0.1
    Port {pi.port}
    User {second_user}
Host pi-dead
    HostName 127.0.0.1
    Port {free_port()}
    User {me}
""")
    opts = (
        f"-F {config} -i {pi.home / 'client_key'} -o UserKnownHostsFile={pi.home / 'known_hosts'} "
        "-o IdentitiesOnly=yes"
    )
    pi_dir = f"fer-edge-fleet-{os.getpid()}"  # relative: in each account's home
    homes = {"pi-a": Path(os.path.expanduser("~")), "pi-b": Path(f"/home/{second_user}")}

    def fleet(target: str, *extra: str) -> subprocess.CompletedProcess:
        argv = [
            "make", "--no-print-directory", "-f", "deploy/deploy.mk", target,
            "PI=pi-a pi-b pi-dead", f"PI_DIR={pi_dir}", f"SSH_OPTS={opts}", f"MODEL={model}",
            f"DEPLOY_PYTHON={sys.executable}", *extra,
        ]  # fmt: skip
        proc = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=900)
        print(proc.stdout[-3000:], proc.stderr)
        return proc

    try:
        t0 = time.monotonic()
        proc = fleet("deploy")
        seconds = time.monotonic() - t0
        assert proc.returncode != 0
        summary = proc.stdout.split("deploy: deploy on 3 Pis:\n")[1].splitlines()
        assert len(summary) == 3, proc.stdout
        verdicts = {ln.split()[0]: ln for ln in summary}
        assert " ok " in verdicts["pi-a"] and " ok " in verdicts["pi-b"], summary
        assert "FAILED" in verdicts["pi-dead"] and "Connection refused" in verdicts["pi-dead"]
        # One error line from deploy (make adds its own "Error 1" after it).
        errors = [ln for ln in proc.stderr.splitlines() if ln.startswith("deploy:")]
        assert errors == ["deploy: error: deploy failed on 1 of 3 Pis: pi-dead"], proc.stderr
        # Every line says which Pi it is from, and both Pis really got the runtime.
        out = proc.stdout.split("deploy: deploy on")[0]
        lines = out[out.index("[pi-") :].splitlines()  # after make's echo of the command
        assert all(ln.startswith("[pi-") for ln in lines), lines
        for name, home in homes.items():
            assert (home / pi_dir / "current" / "fer_edge" / "edge" / "__main__.py").is_file()
            assert f"[{name:<7}] deploy: done" in proc.stdout
        print(f"\nseveral Pis: deploy to 2 Pis + 1 unreachable in {seconds:.0f} s; {summary}")

        status = fleet("deploy-status")
        assert status.returncode != 0
        assert "deploy: error: status failed on 1 of 3 Pis: pi-dead" in status.stderr
        assert status.stdout.count("  ok  ") == 2 and "pi-dead  FAILED" in status.stdout
    finally:
        for home in homes.values():
            shutil.rmtree(home / pi_dir, ignore_errors=True)


THROTTLE = """\
import os, socket, sys, threading, time
sock = socket.create_connection((sys.argv[1], int(sys.argv[2])))
rate = int(sys.argv[3])  # bytes per second towards the Pi
def back():
    while data := sock.recv(65536):
        os.write(1, data)
    os._exit(0)
threading.Thread(target=back, daemon=True).start()
while data := os.read(0, 4096):
    sock.sendall(data)
    time.sleep(len(data) / rate)
"""


@pytest.mark.slow
def test_upgrades_are_atomic_and_roll_back(pi, tmp_path):
    """A release whose pip install fails never becomes current; a deploy interrupted mid-
    transfer leaves the running release alone and the next one completes; rollback swaps."""
    model = require_model()
    pi_dir = pi.home / "fer-edge-upgrades"
    first = make("deploy", pi, pi_dir, model)
    assert first.returncode == 0, first.stderr
    current = pi_dir / "current"
    r1 = os.readlink(current)
    venvs = sorted(p.name for p in (pi_dir / "venvs").iterdir())

    # 1. A new requirement that cannot be installed (pip may use no index): one line, exit 1.
    t0 = time.monotonic()
    opts = f"{pi.ssh_opts} -o SetEnv=PIP_NO_INDEX=1"
    bad = make("deploy", pi, pi_dir, model, f"SSH_OPTS={opts}", "MQTT=mqtt://127.0.0.1")
    seconds = time.monotonic() - t0
    errors = [ln for ln in bad.stderr.splitlines() if ln.startswith("deploy:")]
    print(f"\nfailed upgrade: exit {bad.returncode} after {seconds:.1f} s: {errors}")
    assert bad.returncode != 0 and len(errors) == 1, bad.stderr
    assert "step 'pip' failed" in errors[0] and "paho-mqtt" in errors[0], errors
    assert "the running release is unchanged" in errors[0]
    assert os.readlink(current) == r1 and not (pi_dir / "previous").exists()
    assert "--mqtt" not in (current / ".deploy" / "fer-edge.service").read_text()
    stamp = current / ".venv" / ".requirements-edge.sha256"
    assert stamp.is_file()  # the running venv was only read

    # 2. Interrupted mid-transfer (a 3 MB model through a 200 KB/s link, Ctrl-C during sync).
    big = ROOT / "models" / "fer_float32.tflite"
    if not (big.is_file() and Path(f"{big}.json").is_file()):
        pytest.skip(f"{big} with its contract is needed for the interrupted transfer")
    (tmp_path / "throttle.py").write_text(THROTTLE)
    proxy = (
        f"-o ProxyCommand='{sys.executable} {tmp_path / 'throttle.py'} 127.0.0.1 {pi.port} 200000'"
    )
    argv = [
        "make", "--no-print-directory", "-f", "deploy/deploy.mk", "deploy", f"PI={pi.target}",
        f"PI_DIR={pi_dir}", f"SSH_OPTS={pi.ssh_opts} {proxy}", f"MODEL={big}",
        f"DEPLOY_PYTHON={sys.executable}",
    ]  # fmt: skip
    slow = subprocess.Popen(
        argv, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        start_new_session=True,
    )  # fmt: skip
    for line in slow.stdout:
        if "step 'sync'" in line:
            break
    time.sleep(3)
    parts = list((pi_dir / "releases").glob("*.part"))
    os.killpg(slow.pid, signal.SIGINT)  # Ctrl-C in the terminal that runs make
    slow.communicate(timeout=60)
    assert slow.returncode != 0
    assert parts, "the transfer ended before it could be interrupted"
    part = parts[0]
    assert not (part / "models" / big.name).exists()  # rsync keeps no half file
    assert os.readlink(current) == r1
    assert not (pi_dir / "releases" / part.name.removesuffix(".part")).exists()

    t0 = time.monotonic()
    again = make("deploy", pi, pi_dir, big)
    assert again.returncode == 0, again.stderr
    seconds = time.monotonic() - t0
    r2 = os.readlink(current)
    assert r2 == f"releases/{part.name.removesuffix('.part')}" and not part.exists()
    assert os.readlink(pi_dir / "previous") == r1
    assert (current / "models" / big.name).read_bytes() == big.read_bytes()
    print(f"interrupted transfer: the next deploy completed in {seconds:.1f} s; {r1} -> {r2}")
    # Same requirements: the new release shares the venv; nothing was installed.
    assert "pip install skipped" in again.stdout
    assert sorted(p.name for p in (pi_dir / "venvs").iterdir()) == venvs

    # 3. Rollback: back to r1 by one rename, and again forth.
    back = make("rollback", pi, pi_dir, model)
    assert back.returncode == 0, back.stderr
    assert os.readlink(current) == r1 and os.readlink(pi_dir / "previous") == r2
    assert f"models/{model.name}" in (current / ".deploy" / "fer-edge.service").read_text()
    undo = make("undeploy", pi, pi_dir, model, "PURGE=1")
    assert undo.returncode == 0 and not pi_dir.exists()


def test_rsync_mirrors_the_release_and_leaves_what_the_pi_made(pi, tmp_path):
    """Remote.rsync against the loopback sshd (a few seconds; no deploy around it): the folder
    arrives whole, a second sync of the same files changes nothing, a file gone here goes there
    (--delete), except what the Pi makes itself (.venv/, logs/, __pycache__/, benchmark results);
    what changed comes back as rsync's itemized lines; a failure is one line naming the step."""
    from deploy.remote import Remote, StepError

    remote = Remote(pi.target, tuple(pi.ssh_opts.split()))
    src, dest = tmp_path / "release", pi.home / "rsync-test"
    (src / "edge").mkdir(parents=True)
    (src / "edge" / "a.py").write_text("a = 1\n")
    (src / "gone.txt").write_text("bye\n")
    assert sorted(changed_files(remote.rsync(str(src) + "/", str(dest)))) == [
        "new edge/a.py", "new gone.txt"]  # fmt: skip
    assert (dest / "edge" / "a.py").read_text() == "a = 1\n"
    assert changed_files(remote.rsync(str(src), str(dest))) == []
    made_there = [".venv/bin/python", "logs/events.jsonl", "edge/__pycache__/a.pyc",
                  "benchmarks/results/bench.json"]  # fmt: skip
    for name in made_there:
        (dest / name).parent.mkdir(parents=True, exist_ok=True)
        (dest / name).write_text("made on the Pi\n")
    (src / "gone.txt").unlink()
    (src / "edge" / "a.py").write_text("a = 2\n")
    assert sorted(changed_files(remote.rsync(str(src), str(dest)))) == [
        "deleted gone.txt", "updated edge/a.py"]  # fmt: skip
    assert (dest / "edge" / "a.py").read_text() == "a = 2\n" and not (dest / "gone.txt").exists()
    assert all((dest / name).read_text() == "made on the Pi\n" for name in made_there)
    inside_a_file = dest / "edge" / "a.py" / "x"
    with pytest.raises(StepError) as exc:
        remote.rsync(str(src), str(inside_a_file))
    message = str(exc.value)
    assert message.startswith(f"step 'sync' failed: rsync to {pi.target}:{inside_a_file} exited ")
    assert "\n" not in message
