"""The deploy tool's commands as it builds them, without a Pi: its --help, the settings it
refuses before touching the network, the ssh command lines it runs, the remote script run by
a real `sh` in a folder laid out like the Pi's, and real ssh failing fast against a closed
loopback port. The whole way to a Pi (a real sshd) is tests/test_deploy.py (slow tier)."""

from __future__ import annotations

import shlex
import subprocess
from pathlib import Path

import pytest
from conftest import free_port

from deploy import deploy
from deploy.remote import OUR_SSH_OPTS, Remote, StepError

YUNET = Path(__file__).resolve().parents[1] / "models" / "face_detection_yunet.onnx"
SUBCOMMANDS = ("deploy", "stage", "status", "logs", "rollback", "undeploy", "check-wheels")


def one_error(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    return err


def test_the_help_lists_every_command(capsys):
    with pytest.raises(SystemExit) as exc:
        deploy.main(["--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: deploy ")
    assert "Deploy the edge runtime to a Raspberry Pi over SSH" in out
    for name in SUBCOMMANDS:
        assert f"\n    {name} " in out, name


@pytest.mark.parametrize("name", SUBCOMMANDS)
def test_each_commands_help_shows_its_defaults(name, capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "300")  # argparse wraps (and splits words) at the width
    with pytest.raises(SystemExit) as exc:
        deploy.main([name, "--help"])
    assert exc.value.code == 0
    out = " ".join(capsys.readouterr().out.split())
    assert out.startswith(f"usage: deploy {name} ")
    if name != "check-wheels":
        assert "folder on the Pi, relative to its home (default: fer-edge)" in out
        assert "extra ssh options, e.g. '-p 2222 -i key' (default: '')" in out
    if name in ("deploy", "stage"):
        assert "what the service reads (default: picamera)" in out
        assert "(None = no dashboard) (default: not set)" in out


@pytest.mark.parametrize("name", ["deploy", "status", "logs", "rollback", "undeploy"])
@pytest.mark.parametrize("pi", [[], ["--pi", "  "]])
def test_a_command_without_a_pi_says_how_to_give_one(name, pi, capsys):
    assert deploy.main([name, *pi]) == 2
    assert one_error(capsys) == (
        "deploy: error: PI is not set; run: make deploy PI=user@host (e.g. pi@raspberrypi.local)"
    )


@pytest.mark.parametrize(
    "flags, message",
    [
        (["--ssh_opts", "-i 'my key"], "deploy: error: No closing quotation"),
        (["--pi_dir", "/"], "deploy: error: PI_DIR="),
        (["--pi_dir", "../elsewhere"], "deploy: error: PI_DIR="),
    ],
)
def test_bad_ssh_options_or_folders_are_one_line_before_any_connection(flags, message, capsys):
    assert deploy.main(["status", "--pi", "pi@192.0.2.1", *flags]) == 2  # TEST-NET: unroutable
    assert one_error(capsys).startswith(message)


def parsed(*argv: str):
    return deploy.build_parser().parse_args(list(argv))


def test_the_remote_is_the_pi_and_its_shell_split_ssh_options():
    remote, pi_dir = deploy.remote_from(parsed("status", "--pi", " pi@host "))
    assert (remote, pi_dir) == (Remote("pi@host", ()), "fer-edge")
    remote, pi_dir = deploy.remote_from(
        parsed("status", "--pi", "pi@host", "--ssh_opts", "-p 2222 -i 'my key'", "--pi_dir",
               "apps//fer/")
    )  # fmt: skip
    assert remote.ssh_opts == ("-p", "2222", "-i", "my key")
    assert pi_dir == "apps/fer"


def test_ssh_runs_the_command_under_sh_with_the_users_options_first():
    remote = Remote("pi@host", ("-p", "2222"))
    command = "echo 'it''s' && ls ~"
    assert remote.ssh_argv(command) == [
        "ssh", "-p", "2222", "-o", "BatchMode=yes", "-o", "ConnectTimeout=10",
        "-o", "ServerAliveInterval=15", "pi@host", "sh -c " + shlex.quote(command)]  # fmt: skip
    # a remote terminal only when asked for (logs -f), right before the target
    tty = remote.ssh_argv("true", tty=True)
    assert tty[: tty.index("pi@host")][-1] == "-tt"
    assert tty == [*remote.ssh_argv("true")[:-2], "-tt", "pi@host", "sh -c true"]
    assert OUR_SSH_OPTS.count("-tt") == 0


@pytest.fixture
def pi_home(tmp_path):
    """A home folder laid out as deploy leaves a Pi's: PI_DIR with a current release and an
    older one, each with a remote.sh that says where it runs and with what."""
    home = tmp_path / "home"
    for release in ("current", "releases/r1"):
        script = home / "my apps" / "fer" / release / ".deploy" / "remote.sh"
        script.parent.mkdir(parents=True)
        script.write_text(f'echo "{release}|$FER_EDGE_ROOT|$PWD|$*"\n')
    return home


def run_sh(home: Path, script: str) -> subprocess.CompletedProcess:
    return subprocess.run(["sh", "-c", script], cwd=home, capture_output=True, text=True)


def test_remote_sh_runs_the_current_release_from_pi_dir(pi_home):
    root = pi_home / "my apps" / "fer"
    proc = run_sh(pi_home, deploy.remote_sh("my apps/fer", "status --lines 5"))
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == f"current|{root}|{root / 'current'}|status --lines 5\n"
    proc = run_sh(pi_home, deploy.remote_sh("my apps/fer", "setup r1", release="r1"))
    assert proc.stdout == f"releases/r1|{root}|{root / 'releases' / 'r1'}|setup r1\n"


@pytest.mark.parametrize("pi_dir, release", [("nothing/here", None), ("my apps/fer", "r2"),
                                             ("my apps", None)])  # fmt: skip
def test_remote_sh_without_a_deploy_there_exits_not_ours(pi_home, pi_dir, release):
    proc = run_sh(pi_home, deploy.remote_sh(pi_dir, "status", release=release))
    assert (proc.returncode, proc.stdout) == (deploy.NOT_OURS, "")


def test_the_stage_takes_the_yunet_model_given(tmp_path):
    given = tmp_path / "my-yunet.onnx"
    given.write_bytes(YUNET.read_bytes())
    cfg = deploy.stage_config(parsed("stage", "--out", "x", "--yunet_model", str(given)), "f")
    assert cfg.yunet == given
    assert (cfg.source, cfg.pi_dir, cfg.mqtt, cfg.dashboard) == ("picamera", "f", "", None)
    with pytest.raises(StepError, match=r"^step 'stage' failed: YUNET=/no/y.onnx: no such file"):
        deploy.stage_config(parsed("stage", "--out", "x", "--yunet_model", "/no/y.onnx"), "f")


def test_check_wheels_is_a_command():
    assert parsed("check-wheels").func is deploy.cmd_check_wheels


@pytest.mark.parametrize(
    "name, step, said",
    [
        ("status", "connect", "ssh pi@127.0.0.1: ssh: connect to host 127.0.0.1 port {port}: "
                              "Connection refused"),
        ("rollback", "connect", "ssh pi@127.0.0.1: ssh: connect to host 127.0.0.1 port {port}: "
                                "Connection refused"),
        ("logs", "logs", "ssh pi@127.0.0.1 exited 255"),
    ],
)  # fmt: skip
def test_a_pi_that_does_not_answer_is_one_line_naming_the_step(name, step, said, capfd):
    """Real ssh against a loopback port nobody listens on: it fails at once (exit 255)."""
    port = free_port()
    rc = deploy.main([name, "--pi", "pi@127.0.0.1", "--ssh_opts", f"-p {port}"])
    err = capfd.readouterr().err.strip().splitlines()
    assert rc == 1
    assert err[-1] == f"deploy: error: step '{step}' failed: " + said.format(port=port), err
