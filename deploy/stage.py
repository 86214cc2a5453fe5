"""Build the folder that is mirrored to the Pi: the runtime and nothing else.

Layout of a stage (and so of a release, PI_DIR/releases/ID/, on the Pi):

    Makefile                      deploy/Makefile.pi: run, bench, checks, status, logs
    requirements-edge.txt         generated from pyproject.toml's `edge` extra
    fer_edge/edge/                the runtime package, laid out as the wheel installs it
    fer_edge/benchmarks/          the benchmark harness (its Keras baseline is skipped there)
    fer_edge/evaluation/          the evaluation layer the harness imports (edge/ only below it)
    models/NAME.tflite(.json)     the model and its preprocessing contract
    models/YUNET.onnx             the face detector
    .deploy/                      remote.sh, rotate-events.sh, systemd units, config.mk
    .deploy/mqtt-password         only with MQTT_PASSWORD_FILE: mode 600, the service user's

Everything is generated from its source of truth each time, so a stage is never stale.

On the Pi, PI_DIR holds releases/ID/ (ID = `release_id`, the stage's content hash), `current`
and `previous` (symlinks to releases, swapped by rename), venvs/KEY/ (one per requirements
and Python version, shared by releases) and logs/; remote.sh links each release's .venv and
logs to those.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from string import Template
from urllib.parse import urlsplit

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10; the project's venv is 3.11
    tomllib = None

HERE = Path(__file__).resolve().parent
PROJECT_ROOT = HERE.parent
UNITS = ("fer-edge.service", "fer-edge-rotate.service", "fer-edge-rotate.timer")
EVENTS = "logs/events.jsonl"
# Where the MQTT password lands on the Pi (relative to PI_DIR, the service's working folder).
MQTT_PASSWORD = ".deploy/mqtt-password"
# PI_DIR is used unquoted in systemd units and make; this set needs no escaping in either.
SAFE_DIR = re.compile(r"[A-Za-z0-9._/+-]+")


class StageError(Exception):
    """A local input is missing or invalid; the message says what to pass instead."""


@dataclass(frozen=True)
class StageConfig:
    model: Path  # the .tflite; its `.json` contract must sit beside it
    yunet: Path  # YuNet .onnx for cv2.FaceDetectorYN
    source: str  # what the service reads: picamera, a camera index, a file or a URL
    pi_dir: str  # remote folder, relative to the remote home unless absolute
    mqtt: str = ""  # broker URL for the service's --mqtt ('' = no MQTT)
    mqtt_password_file: Path | None = None  # local file; shipped mode 600 as MQTT_PASSWORD
    dashboard: int | None = None  # the service's --dashboard PORT (None = no dashboard)
    events_sync: str = ""  # the service's --events-sync ('' = the runtime's default)
    events_max_bytes: int = 10 * 1024 * 1024  # rotate the events file past this size ...
    events_keep: int = 5  # ... keeping this many gzipped generations


def check_pi_dir(pi_dir: str) -> str:
    """Normalise PI_DIR and refuse values that would point rsync --delete at a home or root."""
    cleaned = pi_dir.strip().removeprefix("~/").rstrip("/")
    parts = [p for p in cleaned.split("/") if p not in ("", ".")]
    if not parts or ".." in parts or not SAFE_DIR.fullmatch(cleaned):
        raise StageError(
            f"PI_DIR={pi_dir!r}: give a dedicated folder such as fer-edge "
            "(letters, digits, . _ - + /; not the home folder, no '..')"
        )
    return ("/" if cleaned.startswith("/") else "") + "/".join(parts)


def unit_root(pi_dir: str) -> str:
    """PI_DIR as systemd sees it: %h is the user's home, so units need no remote templating."""
    return pi_dir if pi_dir.startswith("/") else f"%h/{pi_dir}"


def check_source(source: str) -> str:
    # SOURCE lands in a systemd ExecStart and in make; refusing blanks, quotes, $ and # there
    # costs real sources (picamera, 0, /dev/video0, a file, rtsp://host/path) nothing.
    if not source or re.search(r"[\s'\"\\$#]", source):
        raise StageError(
            f"SOURCE={source!r}: give picamera, a camera index, a file path or a URL "
            "without spaces, quotes, $ or #"
        )
    return source


def check_mqtt(url: str) -> str:
    """A broker URL that can sit in a systemd unit and holds no password."""
    if not url:
        return ""
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError on a bad port
    except ValueError as exc:
        raise StageError(f"MQTT={url}: {exc}; give mqtt://[user@]host[:port]") from None
    if parts.scheme not in ("mqtt", "mqtts") or not parts.hostname:
        raise StageError(f"MQTT={url}: give mqtt://[user@]host[:port] or mqtts://...")
    if parts.password is not None:
        # The URL ends up in the unit's ExecStart, which any local user can read (ps, systemctl).
        raise StageError(
            "MQTT=...: the URL holds a password, which would be visible in the service's "
            "command line; remove it and pass MQTT_PASSWORD_FILE=path/to/file instead"
        )
    if re.search(r"[\s'\"\\$#]", url):
        raise StageError(f"MQTT={url}: no spaces, quotes, $ or # in the broker URL")
    return url


def check_dashboard(port: str | int | None) -> int | None:
    if port in (None, ""):
        return None
    try:
        value = int(port)
    except ValueError:
        value = 0
    if not 1 <= value <= 65535:
        raise StageError(f"DASHBOARD={port}: give a TCP port number (1-65535), e.g. 8080")
    return value


def check_events_sync(value: str | None) -> str:
    """PI_EVENTS_SYNC: seconds (0 = every frame), off, or empty for the runtime's default;
    read by the runtime's own --events-sync parser, so the Pi never gets a value it refuses."""
    import argparse

    from fer_edge.edge.cliframe import sync_seconds

    text = (value or "").strip().lower()
    if not text:
        return ""
    try:
        seconds = sync_seconds(text)
    except argparse.ArgumentTypeError:
        seconds = -1.0
    if seconds is None:
        return "off"
    if not 0 <= seconds < float("inf"):
        raise StageError(
            f"PI_EVENTS_SYNC={value}: give seconds a power cut may take (0 = none), or off"
        )
    return f"{seconds:g}"


def check_password_file(path: str | None, mqtt: str) -> Path | None:
    if not path:
        return None
    if not mqtt:
        raise StageError("MQTT_PASSWORD_FILE is set but MQTT is not; pass MQTT=mqtt://host too")
    file = Path(path)
    if not file.is_file():
        raise StageError(f"MQTT_PASSWORD_FILE={path}: no such file")
    return file


def edge_requirements(
    pyproject: Path = PROJECT_ROOT / "pyproject.toml", mqtt: bool = False
) -> list[str]:
    """The runtime requirements: core dependencies plus the `edge` extra, as pip would install;
    with `mqtt`, also the `mqtt` extra (the MQTT client) when pyproject.toml defines one."""
    if tomllib is None:
        raise StageError(
            "reading pyproject.toml needs Python 3.11+ (tomllib); set PYTHON=python3.11"
        )
    try:
        project = tomllib.loads(pyproject.read_text())["project"]
        extras = project["optional-dependencies"]
        reqs = project.get("dependencies", []) + extras["edge"]
    except (OSError, KeyError, tomllib.TOMLDecodeError) as exc:
        raise StageError(
            f"{pyproject}: cannot read [project.optional-dependencies].edge ({exc})"
        ) from None
    if mqtt:  # only a Pi that publishes needs the client
        reqs += extras.get("mqtt", [])
    return list(dict.fromkeys(reqs))  # the core numpy pin repeats in the extra


def requirements_text(reqs: list[str]) -> str:
    # No timestamp: the Pi hashes this file to decide whether to run pip again.
    return (
        "# Generated by deploy/stage.py from pyproject.toml ([project] dependencies + the\n"
        "# `edge` extra). Do not edit here: change pyproject.toml and deploy again.\n"
        + "".join(r + "\n" for r in reqs)
    )


def resolve_yunet(explicit: str | None) -> Path:
    if explicit:
        path = Path(explicit)
    else:
        # The runtime's own search order (models/, then ../shared/models/) is the one truth.
        from fer_edge.edge.detectors import default_yunet_path

        path = default_yunet_path()
        if path is None:
            raise StageError(
                "no YuNet model in models/ or ../shared/models/; "
                "run `make models` or pass YUNET=path/to/yunet.onnx"
            )
    if not path.is_file():
        raise StageError(f"YUNET={explicit}: no such file; pass the YuNet .onnx path")
    return path


def check_model(model: Path) -> None:
    if not model.is_file():
        raise StageError(
            f"MODEL={model}: no such file; convert one first (make convert) "
            "or pass MODEL=models/NAME.tflite"
        )
    if model.suffix != ".tflite":
        raise StageError(f"MODEL={model}: expected a .tflite file")
    if not Path(f"{model}.json").is_file():
        raise StageError(
            f"MODEL={model}: its contract {model.name}.json is missing beside it; "
            "re-run the converter, which writes both"
        )


def render(template: str, cfg: StageConfig) -> str:
    # The units run whatever release `current` points at when they start (releases/ below).
    root = f"{unit_root(cfg.pi_dir)}/current"
    exec_args = [
        "-m",
        "fer_edge.edge",
        "run",
        "--model",
        f"models/{cfg.model.name}",
        "--yunet_model",
        f"models/{cfg.yunet.name}",
        "--source",
        cfg.source,
        "--headless",
        "--events",
        EVENTS,
    ]
    # Only when set, so a deploy without them runs exactly as before.
    if cfg.mqtt:
        exec_args += ["--mqtt", cfg.mqtt]
    if cfg.mqtt_password_file:
        exec_args += ["--mqtt-password-file", MQTT_PASSWORD]
    if cfg.dashboard:
        exec_args += ["--dashboard", str(cfg.dashboard)]
    if cfg.events_sync:
        exec_args += ["--events-sync", cfg.events_sync]
    return Template(template).substitute(
        root=root,
        python=f"{root}/.venv/bin/python",
        exec_args=" ".join(a.replace("%", "%%") for a in exec_args),  # % is a specifier
        events=EVENTS,
        events_max_bytes=cfg.events_max_bytes,
        events_keep=cfg.events_keep,
        model=f"models/{cfg.model.name}",
        yunet=f"models/{cfg.yunet.name}",
        source=cfg.source,
    )


def build(cfg: StageConfig, out: Path) -> None:
    """Fill the empty folder `out`. Copies keep their mtimes so identical files stay identical."""
    check_model(cfg.model)
    if not cfg.yunet.is_file():
        raise StageError(f"YuNet model {cfg.yunet} is missing")
    check_source(cfg.source)
    out.mkdir(parents=True, exist_ok=True)
    # As installed (pyproject's package-dir): fer_edge/ holding edge/, and benchmarks/ with
    # the evaluation/ layer it imports (for `make bench` on the Pi; numpy and OpenCV only, no
    # TF). fer_edge/__init__.py imports nothing.
    for package in ("edge", "evaluation", "benchmarks"):
        shutil.copytree(
            PROJECT_ROOT / package,
            out / "fer_edge" / package,
            ignore=shutil.ignore_patterns("__pycache__", "*.pyc", "results"),
        )
    shutil.copy2(PROJECT_ROOT / "fer_edge" / "__init__.py", out / "fer_edge" / "__init__.py")
    models = out / "models"
    models.mkdir()
    for src in (cfg.model, Path(f"{cfg.model}.json"), cfg.yunet):
        shutil.copy2(src, models / src.name)
    reqs = edge_requirements(mqtt=bool(cfg.mqtt))
    (out / "requirements-edge.txt").write_text(requirements_text(reqs))
    shutil.copy2(HERE / "Makefile.pi", out / "Makefile")
    meta = out / ".deploy"
    meta.mkdir()
    for name in ("remote.sh", "rotate-events.sh"):
        shutil.copy2(HERE / name, meta / name)
    for name in (*UNITS, "config.mk"):
        (meta / name).write_text(render((HERE / "templates" / f"{name}.in").read_text(), cfg))
    if cfg.mqtt_password_file:
        write_secret(cfg.mqtt_password_file, out / MQTT_PASSWORD)


def write_secret(src: Path, dest: Path) -> None:
    """Copy a secret created 0600 from the start (never briefly readable); rsync -a keeps the
    mode, and the file on the Pi belongs to the SSH user, who is the service's user."""
    try:
        data = src.read_bytes()
    except OSError as exc:
        raise StageError(f"MQTT_PASSWORD_FILE={src}: cannot read ({exc.strerror})") from None
    fd = os.open(dest, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)


def build_into(cfg: StageConfig, out: Path) -> None:
    """Build next to `out` and swap it in, so `out` is never half-written."""
    out = out.resolve()
    if out.exists() and not (out / ".deploy").is_dir():
        raise StageError(f"{out} exists and is not a stage (no .deploy/); pick another --out")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        build(cfg, tmp)
        if out.exists():
            shutil.rmtree(out)
        tmp.rename(out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def release_id(stage: Path) -> str:
    """A stage's content hash (paths, modes, bytes): the name of its release on the Pi, so the
    same runtime, model and settings are the same release and a redeploy transfers nothing."""
    h = hashlib.sha256()
    for path in sorted(stage.rglob("*")):
        rel = path.relative_to(stage).as_posix()
        if path.is_symlink():
            h.update(f"L {rel} {os.readlink(path)}\0".encode())
        elif path.is_file():
            h.update(f"F {rel} {path.stat().st_mode & 0o777:o}\0".encode())
            h.update(path.read_bytes())
    return h.hexdigest()[:12]
