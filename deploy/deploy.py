"""Deploy the edge runtime to a Raspberry Pi over SSH: `python -m deploy COMMAND`.

deploy: stage -> connect -> sync (rsync into releases/ID) -> setup on the Pi (venv, pip,
units, switch `current`, service). rollback: `current` back to `previous`.
Each step that fails ends the run with one line, `deploy: error: step 'NAME' failed: ...`.
"""

from __future__ import annotations

import argparse
import shlex
import sys
import tempfile
from pathlib import Path

from fer_edge.edge.cliframe import command_parser, run_command
from fer_edge.edge.config import default_model_path
from fer_edge.edge.errors import FerEdgeError

from deploy.fleet import run_fleet, targets
from deploy.remote import Remote, StepError, changed_files, last_line
from deploy.stage import (
    StageConfig,
    StageError,
    build,
    build_into,
    check_dashboard,
    check_events_sync,
    check_mqtt,
    check_password_file,
    check_pi_dir,
    check_source,
    release_id,
    resolve_yunet,
)
from deploy.wheels import check_wheels

PROG = "deploy"
# Exit codes of the connect step's preflight script (below); 255 is ssh's own failure.
NO_RSYNC, NOT_OURS = 3, 4


class UsageError(FerEdgeError):
    """A missing or invalid setting; exit 2 like argparse does."""


def say(msg: str) -> None:
    print(f"{PROG}: {msg}", flush=True)


def fleet(args) -> bool:
    """With several Pis in PI, run the command on each in parallel (deploy/fleet.py)."""
    pis = targets(args.pi)
    if len(pis) < 2:
        return False
    remote_from(argparse.Namespace(**{**vars(args), "pi": pis[0]}))  # bad settings: one line
    run_fleet(PROG, args.command, args.argv, pis)
    return True


def remote_from(args) -> tuple[Remote, str]:
    if not args.pi.strip():
        raise UsageError("PI is not set; run: make deploy PI=user@host (e.g. pi@raspberrypi.local)")
    try:
        opts = tuple(shlex.split(args.ssh_opts))
        pi_dir = check_pi_dir(args.pi_dir)
    except (ValueError, StageError) as exc:
        raise UsageError(str(exc)) from None
    return Remote(args.pi.strip(), opts), pi_dir


def stage_config(args, pi_dir: str) -> StageConfig:
    try:
        mqtt = check_mqtt(args.mqtt)
        return StageConfig(
            model=Path(args.model),
            yunet=resolve_yunet(args.yunet_model),
            source=check_source(args.source),
            pi_dir=pi_dir,
            mqtt=mqtt,
            mqtt_password_file=check_password_file(args.mqtt_password_file, mqtt),
            dashboard=check_dashboard(args.dashboard),
            events_sync=check_events_sync(args.events_sync),
        )
    except StageError as exc:
        raise StepError("stage", str(exc)) from None


def connect(remote: Remote, pi_dir: str, release: str) -> tuple[bool, bool]:
    """Reach the Pi, create PI_DIR, and refuse a folder that holds no earlier deploy.
    Returns (the release is already there, there is a current release)."""
    q = shlex.quote(pi_dir)
    proc = remote.run(
        "connect",
        f"""
        mkdir -p -- {q} && cd -- {q} || exit 1
        command -v rsync >/dev/null 2>&1 || exit {NO_RSYNC}
        [ -z "$(ls -A)" ] || [ -d releases ] || [ -f .deploy/remote.sh ] || exit {NOT_OURS}
        mkdir -p releases || exit 1
        if [ -d releases/{release} ]; then echo have-release; fi
        if [ -d current/ ]; then echo have-current; fi
    """,
    )
    if proc.returncode == NO_RSYNC:
        raise StepError(
            "connect",
            f"rsync is not installed on {remote.target}; run there: sudo apt install -y rsync",
        )
    if proc.returncode == NOT_OURS:
        raise StepError(
            "connect",
            f"{remote.target}:{pi_dir} is not empty and holds no earlier "
            "deploy (releases/ or .deploy/remote.sh); refusing to deploy into it: "
            "choose another PI_DIR",
        )
    if proc.returncode != 0:
        raise StepError(
            "connect", f"cannot create {remote.target}:{pi_dir}: {last_line(proc.stderr)}"
        )
    return "have-release" in proc.stdout.split(), "have-current" in proc.stdout.split()


def remote_sh(pi_dir: str, command: str, release: str | None = None) -> str:
    """Run remote.sh from a release folder (default: `current`), telling it where PI_DIR is."""
    q = shlex.quote(pi_dir)
    where = f"releases/{release}" if release else "current"
    return (
        f"cd -- {q} 2>/dev/null && [ -f {where}/.deploy/remote.sh ] || exit {NOT_OURS}\n"
        f"FER_EDGE_ROOT=$PWD; export FER_EDGE_ROOT; cd {where} || exit {NOT_OURS}\n"
        f"exec sh .deploy/remote.sh {command}"
    )


def check_deployed(rc: int, remote: Remote, pi_dir: str) -> None:
    if rc == NOT_OURS:
        raise StepError(
            "connect", f"nothing deployed at {remote.target}:{pi_dir}; run make deploy first"
        )


def run_remote(remote: Remote, pi_dir: str, command: str, release: str | None = None) -> None:
    """Run .deploy/remote.sh, echoing its lines, and turn a failure into the failing step."""
    state = {"step": command, "error": ""}

    def on_line(line: str) -> None:
        if line.startswith("==> "):
            state["step"] = line[4:].strip()
            say(f"step '{state['step']}' on {remote.target}")
        elif line.startswith("!! "):
            state["error"] = line[3:].partition(": ")[2]
        else:
            print(f"  [pi] {line}", flush=True)
            state["last"] = line

    rc = remote.stream(remote_sh(pi_dir, command, release), on_line)
    check_deployed(rc, remote, pi_dir)
    if rc == 255 and not state["error"]:
        raise StepError("connect", f"ssh {remote.target}: {state.get('last', 'connection failed')}")
    if rc != 0:
        raise StepError(state["step"], state["error"] or state.get("last", f"exit status {rc}"))


def cmd_deploy(args) -> None:
    """Transfer into releases/ID.part, rename it to releases/ID, then remote.sh setup, which
    installs, verifies and only then swaps `current` and restarts: a failed install or an
    interrupted transfer leaves the running release as it was."""
    if fleet(args):
        return
    remote, pi_dir = remote_from(args)
    cfg = stage_config(args, pi_dir)
    with tempfile.TemporaryDirectory(prefix="fer-edge-stage-") as tmp:
        say(f"step 'stage': {cfg.model} + {cfg.yunet.name}, source {cfg.source}")
        try:
            build(cfg, Path(tmp))
            rid = release_id(Path(tmp))
        except (StageError, OSError) as exc:
            raise StepError("stage", str(exc)) from None
        say(f"step 'connect': {remote.target}")
        have, has_current = connect(remote, pi_dir, rid)
        if have:
            changes = []
        else:
            part = f"{pi_dir}/releases/{rid}.part"
            say(f"step 'sync': -> {remote.target}:{part}")
            # Unchanged files are hard links to the current release's: only changes travel.
            link = ("--link-dest=../../current/",) if has_current else ()
            changes = changed_files(remote.rsync(tmp, part, *link))
            q = shlex.quote(pi_dir)
            done = remote.run("sync", f"cd -- {q}/releases && mv -T -- {rid}.part {rid}")
            if done.returncode != 0:
                raise StepError("sync", f"cannot rename {part}: {last_line(done.stderr)}")
    if changes:
        say(f"{len(changes)} file(s) changed:")
        for change in changes:
            print(f"  {change}")
    else:
        say("no files changed: nothing transferred")
    run_remote(remote, pi_dir, f"setup {rid}", release=rid)
    say(f"done: {remote.target}:{pi_dir} release {rid}")


def cmd_rollback(args) -> None:
    if fleet(args):
        return
    run_remote(*remote_from(args), "rollback")


def cmd_stage(args) -> None:
    try:
        build_into(stage_config(args, check_pi_dir(args.pi_dir)), Path(args.out))
    except (StageError, OSError) as exc:
        raise StepError("stage", str(exc)) from None
    say(f"staged into {args.out}")


def cmd_status(args) -> None:
    if fleet(args):
        return
    run_remote(*remote_from(args), "status")


def cmd_undeploy(args) -> None:
    if fleet(args):
        return
    run_remote(*remote_from(args), "undeploy --purge" if args.purge else "undeploy")


def cmd_logs(args) -> None:
    if fleet(args):
        return
    remote, pi_dir = remote_from(args)
    rc = remote.interactive(remote_sh(pi_dir, "logs --journal" if args.journal else "logs"))
    check_deployed(rc, remote, pi_dir)
    if rc not in (0, 130):
        raise StepError("logs", f"ssh {remote.target} exited {rc}")


def cmd_check_wheels(args) -> None:
    check_wheels()


def build_parser() -> argparse.ArgumentParser:
    fmt = argparse.ArgumentDefaultsHelpFormatter
    target = argparse.ArgumentParser(add_help=False)
    target.add_argument(
        "--pi", default="", help="user@host (or a Host from ~/.ssh/config); several: 'pi@a pi@b'"
    )
    target.add_argument(
        "--pi_dir", default="fer-edge", help="folder on the Pi, relative to its home"
    )
    target.add_argument("--ssh_opts", default="", help="extra ssh options, e.g. '-p 2222 -i key'")
    what = argparse.ArgumentParser(add_help=False)
    what.add_argument(
        "--model", default=str(default_model_path()), help="model; its .json contract beside it"
    )
    what.add_argument(
        "--yunet_model", default=None, help="YuNet .onnx (default: models/, then ../shared/models/)"
    )
    what.add_argument("--source", default="picamera", help="what the service reads")
    what.add_argument(
        "--mqtt", default="", help="broker the service publishes to, mqtt://[user@]host[:port]"
    )
    what.add_argument(
        "--mqtt-password-file",
        default=None,
        help="local file with the MQTT password; shipped mode 600, never on a command line",
    )
    what.add_argument(
        "--dashboard", default=None, help="the service's dashboard port (None = no dashboard)"
    )
    what.add_argument(
        "--events_sync",
        default="",
        help="the service's --events-sync: seconds a power cut may take, 0, or off ('' = 1 s)",
    )

    parser, sub = command_parser(PROG, __doc__.splitlines()[0])
    p = sub.add_parser(
        "deploy",
        parents=[target, what],
        formatter_class=fmt,
        help="copy the runtime to the Pi, install it and (re)start the service",
    )
    p.set_defaults(func=cmd_deploy)
    p = sub.add_parser(
        "stage",
        parents=[target, what],
        formatter_class=fmt,
        help="only build the folder that deploy would copy",
    )
    p.add_argument("--out", required=True, help="folder to (re)create")
    p.set_defaults(func=cmd_stage)
    p = sub.add_parser(
        "status", parents=[target], formatter_class=fmt, help="service state and the last events"
    )
    p.set_defaults(func=cmd_status)
    p = sub.add_parser("logs", parents=[target], formatter_class=fmt, help="follow the events file")
    p.add_argument("--journal", action="store_true", help="follow the service's journal instead")
    p.set_defaults(func=cmd_logs)
    p = sub.add_parser(
        "rollback",
        parents=[target],
        formatter_class=fmt,
        help="switch back to the previous release and restart the service",
    )
    p.set_defaults(func=cmd_rollback)
    p = sub.add_parser(
        "undeploy",
        parents=[target],
        formatter_class=fmt,
        help="stop, disable and remove the service; keep PI_DIR unless --purge",
    )
    p.add_argument("--purge", action="store_true", help="also delete PI_DIR (venv, logs)")
    p.set_defaults(func=cmd_undeploy)
    p = sub.add_parser(
        "check-wheels",
        formatter_class=fmt,
        help="prove the edge requirements have aarch64 wheels for Python 3.11/3.13",
    )
    p.set_defaults(func=cmd_check_wheels)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    parser.set_defaults(argv=argv)  # what fleet() hands to one process per Pi
    return run_command(parser, argv)


if __name__ == "__main__":
    sys.exit(main())
