"""The deploy commands as a user types them, from the project root (issues #10 and #11).

`make -n` shows what each command the README and docs/raspberry-pi.md print would run: the
venv's Python, the Pi's own SOURCE default (picamera) unless the user gives one, MQTT and
dashboard flags only when set. Staging is real: the unit and the 0600 secret file are the ones
deploy would copy.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import ROOT
from fer_edge.edge.config import DEFAULT_MODEL_FILE

from deploy.stage import (
    StageConfig,
    StageError,
    build,
    check_mqtt,
    edge_requirements,
    resolve_yunet,
)

README_COMMANDS = ("deploy", "deploy-status", "logs", "rollback", "undeploy")


def make_n(*args: str, env: dict | None = None) -> str:
    if shutil.which("make") is None:
        pytest.skip("make is not installed")
    clean = {k: v for k, v in os.environ.items() if k not in ("SOURCE", "PI_SOURCE", "MODEL")}
    proc = subprocess.run(
        ["make", "-n", "--no-print-directory", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env={**clean, **(env or {})},
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.replace("\\\n", " ")


def deploy_argv(dry_run: str) -> list[str]:
    """The `python -m deploy ...` command of a `make -n` output, split as the shell would."""
    line = next(ln for ln in dry_run.splitlines() if " -m deploy " in ln)
    return shlex.split(line)


def flag(argv: list[str], name: str) -> str | None:
    prefix = f"--{name}="
    return next((a[len(prefix) :] for a in argv if a.startswith(prefix)), None)


def test_make_n_deploy_uses_the_venv_and_the_pi_camera():
    out = make_n("deploy", "PI=pi@x")
    assert ".venv/bin/python -m deploy deploy" in out and "--source=picamera" in out
    assert "python3 -m deploy" not in out and "--source='0'" not in out
    # No MODEL: deploy ships the runtime's own default model (edge/config.py), named only there.
    assert "--model" not in out
    from deploy.deploy import build_parser

    model = Path(build_parser().parse_args(["deploy", "--pi=pi@x"]).model)
    assert model.name == DEFAULT_MODEL_FILE and model.is_file()


def readme_make_commands() -> list[str]:
    """Every `make <deploy command>` line that docs/raspberry-pi.md and the README's "A Raspberry
    Pi" section print."""
    readme = (ROOT / "README.md").read_text()
    section = readme.split("\n### A Raspberry Pi\n", 1)[1].split("\n#", 1)[0]
    text = section + (ROOT / "docs" / "raspberry-pi.md").read_text()
    lines = []
    for block in re.findall(r"```bash\n(.*?)```", text, re.S):
        for line in block.splitlines():
            command = line.split("  #")[0].strip()
            if command.startswith("make ") and command.split()[1] in README_COMMANDS:
                lines.append(command)
    return lines


def test_readme_deploy_commands_run_the_venv_python_with_the_right_source():
    commands = readme_make_commands()
    assert len(commands) >= 8, commands
    for command in commands:
        words = shlex.split(command)[1:]
        given = dict(w.split("=", 1) for w in words if "=" in w)
        argv = deploy_argv(make_n(*words))
        assert argv[:3] == [".venv/bin/python", "-m", "deploy"], command
        assert argv[3] == words[0].replace("deploy-status", "status"), command
        assert flag(argv, "pi") == given["PI"] and flag(argv, "ssh_opts") == given.get(
            "SSH_OPTS", ""
        )
        if words[0] == "deploy":
            assert flag(argv, "source") == given.get("SOURCE", "picamera"), command
            assert flag(argv, "model") == given.get("MODEL"), command
            assert flag(argv, "mqtt") == given.get("MQTT"), command
            assert flag(argv, "dashboard") == given.get("DASHBOARD"), command
        if words[0] == "undeploy":
            assert ("--purge" in argv) == ("PURGE" in given), command


@pytest.mark.parametrize(
    "args, env, source",
    [
        (["SOURCE=/home/pi/clip.mp4"], {}, "/home/pi/clip.mp4"),  # command line
        ([], {"SOURCE": "0"}, "0"),  # the environment is the user's too
        (["SOURCE=0", "PI_SOURCE=rtsp://cam/x"], {}, "rtsp://cam/x"),  # the Pi's own wins
        (["PI_SOURCE=1"], {}, "1"),
    ],
)
def test_a_source_the_user_gives_reaches_the_pi(args, env, source):
    argv = deploy_argv(make_n("deploy", "PI=pi@x", *args, env=env))
    assert flag(argv, "source") == source


def test_quoting_keeps_odd_values_whole():
    argv = deploy_argv(make_n("deploy", "PI=pi@x", "SSH_OPTS=-p 2222 -i my key's"))
    assert flag(argv, "ssh_opts") == "-p 2222 -i my key's"


def test_make_help_lists_each_variable_once():
    proc = subprocess.run(["make", "help"], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    variables = proc.stdout.split("Variables", 1)[1]
    names = re.findall(r"^  ([A-Z][A-Z_0-9]+) ", variables, re.M)
    assert len(names) == len(set(names)), sorted(n for n in names if names.count(n) > 1)
    for name in ("PYTHON", "SOURCE", "MODEL", "PI", "PI_SOURCE", "DEPLOY_PYTHON", "MQTT"):
        assert name in names
    for target in ("deploy", "pi-emulator", "test-pi"):
        assert re.search(rf"^  {target} ", proc.stdout, re.M), target


def test_mqtt_and_dashboard_only_when_set():
    plain = deploy_argv(make_n("deploy", "PI=pi@x"))
    assert not [a for a in plain if a.startswith(("--mqtt", "--dashboard"))]
    full = deploy_argv(
        make_n(
            "deploy",
            "PI=pi@x",
            "MQTT=mqtt://fer@broker:1883",
            "MQTT_PASSWORD_FILE=secrets/mqtt",
            "DASHBOARD=8080",
        )
    )
    assert flag(full, "mqtt") == "mqtt://fer@broker:1883"
    assert flag(full, "mqtt-password-file") == "secrets/mqtt"
    assert flag(full, "dashboard") == "8080"


@pytest.mark.parametrize(
    "given, runs",
    [([], None), (["PI_EVENTS_SYNC=0"], "0"), (["PI_EVENTS_SYNC=off"], "off"),
     (["PI_EVENTS_SYNC=2.50"], "2.5")],
)  # fmt: skip
def test_pi_events_sync_reaches_the_service_only_when_set(tmp_path, given, runs):
    from deploy.deploy import build_parser, stage_config

    argv = deploy_argv(make_n("deploy", "PI=pi@x", *given))
    args = build_parser().parse_args(argv[3:])
    cfg = stage_config(args, "fer-edge")
    out = stage(tmp_path, events_sync=cfg.events_sync)
    start = exec_start(out)
    if runs is None:
        assert "--events-sync" not in start  # the runtime's own default (1 s)
    else:
        assert start[start.index("--events-sync") + 1] == runs


def stage(tmp_path: Path, **kw) -> Path:
    model = ROOT / "models" / "fer_int8.tflite"
    if not Path(f"{model}.json").is_file():
        pytest.skip("no models/fer_int8.tflite with its contract")
    try:
        yunet = resolve_yunet(None)
    except StageError as exc:
        pytest.skip(str(exc))
    out = tmp_path / "stage"
    build(StageConfig(model=model, yunet=yunet, source="picamera", pi_dir="fer-edge", **kw), out)
    return out


def exec_start(stage_dir: Path) -> list[str]:
    unit = (stage_dir / ".deploy" / "fer-edge.service").read_text()
    return shlex.split(re.search(r"^ExecStart=(.*)$", unit, re.M).group(1))


def test_unit_carries_mqtt_and_dashboard_and_the_secret_is_0600(tmp_path):
    secret = tmp_path / "pw"
    secret.write_text("hunter2\n")
    out = stage(
        tmp_path,
        mqtt="mqtt://fer@broker:1883",
        mqtt_password_file=secret,
        dashboard=8080,
    )
    argv = exec_start(out)
    assert argv[argv.index("--mqtt") + 1] == "mqtt://fer@broker:1883"
    assert argv[argv.index("--mqtt-password-file") + 1] == ".deploy/mqtt-password"
    assert argv[argv.index("--dashboard") + 1] == "8080"
    shipped = out / ".deploy" / "mqtt-password"
    assert shipped.read_text() == "hunter2\n" and shipped.stat().st_mode & 0o777 == 0o600
    others = [p for p in out.rglob("*") if p.is_file() and p != shipped]
    assert not any(b"hunter2" in p.read_bytes() for p in others)


def test_mqtt_extra_goes_to_the_pi_only_with_mqtt(tmp_path):
    pyproject = tmp_path / "pyproject.toml"
    pyproject.write_text(
        '[project]\ndependencies = ["numpy"]\n[project.optional-dependencies]\n'
        'edge = ["numpy", "opencv-python-headless"]\nmqtt = ["paho-mqtt>=2.1,<3"]\n'
    )
    assert edge_requirements(pyproject) == ["numpy", "opencv-python-headless"]
    assert edge_requirements(pyproject, mqtt=True)[-1] == "paho-mqtt>=2.1,<3"


def test_unit_without_mqtt_or_dashboard_has_neither(tmp_path):
    out = stage(tmp_path)
    argv = exec_start(out)
    assert not [a for a in argv if a.startswith(("--mqtt", "--dashboard"))]
    assert not (out / ".deploy" / "mqtt-password").exists()


@pytest.mark.parametrize(
    "url, expected",
    [
        ("mqtt://fer:hunter2@broker", "remove it and pass MQTT_PASSWORD_FILE"),
        ("http://broker", "give mqtt://[user@]host[:port]"),
        ("mqtt://broker:99999", "give mqtt://[user@]host[:port]"),
        ("mqtt://bro ker", "no spaces"),
    ],
)
def test_bad_mqtt_urls_are_refused(url, expected):
    with pytest.raises(StageError) as err:
        check_mqtt(url)
    assert expected in str(err.value) and "hunter2" not in str(err.value)


@pytest.mark.parametrize(
    "extra, expected",
    [
        (["--mqtt=mqtt://u:hunter2@b"], "MQTT=...: the URL holds a password"),
        (["--dashboard=http"], "DASHBOARD=http: give a TCP port number"),
        (["--events_sync=-1"], "PI_EVENTS_SYNC=-1: give seconds a power cut may take"),
        (["--events_sync=soon"], "PI_EVENTS_SYNC=soon: give seconds"),
        (["--mqtt-password-file=/nonexistent", "--mqtt=mqtt://b"], "no such file"),
        (["--mqtt-password-file=/etc/hostname"], "MQTT is not"),
    ],
)
def test_deploy_refuses_bad_mqtt_or_dashboard_in_one_line(tmp_path, extra, expected):
    proc = subprocess.run(
        [sys.executable, "-m", "deploy", "stage", f"--out={tmp_path / 's'}", *extra],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 1 and proc.stderr.count("\n") == 1, proc.stderr
    assert proc.stderr.startswith("deploy: error: step 'stage' failed: ")
    assert expected in proc.stderr and "hunter2" not in proc.stderr


def test_emulated_pi_tool_runs_on_a_python_without_the_package():
    # .ci/run starts `python3 -m deploy.pi build` with the system python3 before `make setup`
    # has installed anything; -S keeps site-packages (and the editable install) out, as there.
    proc = subprocess.run(
        [sys.executable, "-S", "-m", "deploy.pi", "build", "--help"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "--os" in proc.stdout
