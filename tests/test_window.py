"""The overlay window under a real X server (Debian's Xvfb), driven as a user types it.

`make setup` picks the GUI OpenCV (opencv-python) when a display is found, `make run` opens the
window and shows the overlaid frames, q closes it; without a display the run says where to look;
GUI=0 swaps in the headless wheel so only one package provides cv2. The venv is the tests' own
(`make setup VENV=... EXTRAS=`: the runtime, no TensorFlow), so the project's .venv keeps the
OpenCV its machine chose. FER_EDGE_WINDOW_SCREENSHOT=1 also writes docs/window.png.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from tests.conftest import ROOT, SHARED, VIDEO_480, need, one_line_error, system_tool

pytestmark = pytest.mark.slow  # a venv with OpenCV and LiteRT (~45 s from pip's cache)

TITLE = "fer-edge"  # edge/sinks.py: Window's default title
# what a run of `make` must not inherit from a `make test` around pytest
MAKE_STATE = (
    "DISPLAY",
    "WAYLAND_DISPLAY",
    "MAKEFLAGS",
    "MFLAGS",
    "MAKELEVEL",
    "GUI",
    "EXTRAS",
    "ARGS",
    "SOURCE",
    "MODEL",
    "VENV",
)  # make exports command-line variables


def make(*args: str, display: str | None, timeout: int = 900) -> subprocess.CompletedProcess:
    """`make ARGS` from the project root with DISPLAY set to `display` (or unset)."""
    env = {k: v for k, v in os.environ.items() if k not in MAKE_STATE}
    if display:
        env["DISPLAY"] = display
    return subprocess.run(
        [system_tool("make", package="make"), "--no-print-directory", *args],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout,
    )  # fmt: skip


def opencv_wheels(venv: Path) -> list[str]:
    """The installed distributions that provide cv2, by pip's normalised name."""
    proc = subprocess.run(
        [str(venv / "bin" / "python"), "-m", "pip", "list", "--format=json"],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    names = (p["name"].lower().replace("_", "-") for p in json.loads(proc.stdout))
    return sorted(n for n in names if n.startswith("opencv"))


def free_display() -> str:
    """A display number no X server holds."""
    for n in range(60, 200):
        if not (Path(f"/tmp/.X11-unix/X{n}").exists() or Path(f"/tmp/.X{n}-lock").exists()):
            return f":{n}"
    raise AssertionError("no free X display number in 60..199")


@pytest.fixture(scope="module")
def xserver():
    """A real X server (Xvfb); its display, once it accepts connections."""
    xvfb = system_tool("Xvfb", package="xvfb")
    read, write = os.pipe()
    # -displayfd: Xvfb picks a free display and writes its number when it is ready
    proc = subprocess.Popen(
        [xvfb, "-displayfd", str(write), "-screen", "0", "1280x800x24", "-nolisten", "tcp"],
        pass_fds=(write,), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )  # fmt: skip
    os.close(write)
    with os.fdopen(read) as ready:
        number = ready.readline().strip()  # "" when Xvfb exited instead
    try:
        assert number, f"Xvfb did not start: {proc.communicate(timeout=10)[1].decode()}"
        yield f":{number}"
    finally:
        proc.terminate()
        proc.wait(timeout=10)


@pytest.fixture(scope="module")
def gui_venv(tmp_path_factory, xserver) -> tuple[Path, subprocess.CompletedProcess]:
    """A venv made by `make setup` on a machine with a display, and that setup's output."""
    venv = tmp_path_factory.mktemp("window") / "venv"
    proc = make("setup", f"VENV={venv}", "EXTRAS=", display=xserver)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return venv, proc


def test_extras_differ_only_in_opencv():
    tomllib = pytest.importorskip("tomllib")
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"][
        "optional-dependencies"
    ]
    edge, desktop, runtime = (set(extras[k]) for k in ("edge", "desktop", "runtime"))
    assert edge & desktop == runtime
    assert [r.split(">")[0] for r in edge - runtime] == ["opencv-python-headless"]
    assert [r.split(">")[0] for r in desktop - runtime] == ["opencv-python"]
    # the same OpenCV versions in both flavours
    assert (edge - runtime).pop().split(">", 1)[1] == (desktop - runtime).pop().split(">", 1)[1]


@pytest.mark.parametrize(
    "arg, named",
    [("GUI=yes", "GUI=yes"), ("EXTRAS=edge,desktop", "edge and desktop"), ("GUI=1", "EXTRAS")],
)
def test_make_refuses_two_opencv_choices(arg, named, tmp_path):
    extra = ["EXTRAS=edge"] if arg == "GUI=1" else []  # GUI=1 with the headless extra
    proc = make("-n", "setup", f"VENV={tmp_path}/venv", arg, *extra, display=None, timeout=60)
    assert proc.returncode != 0
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and named in lines[0], proc.stderr


def test_setup_with_a_display_installs_the_gui_wheel_once(gui_venv, xserver):
    venv, setup = gui_venv
    assert setup.stdout.strip().splitlines()[-1] == (
        f"make setup: {venv} has opencv-python (the overlay window), as a display was found "
        f"(DISPLAY={xserver}); GUI=0 switches"
    )
    assert opencv_wheels(venv) == ["opencv-python"]
    stamp = venv / ".installed-desktop"
    before = stamp.stat().st_mtime_ns
    again = make("setup", f"VENV={venv}", "EXTRAS=", display=xserver)
    assert again.returncode == 0, again.stderr
    assert again.stdout.strip().splitlines() == [setup.stdout.strip().splitlines()[-1]]
    assert "pip" not in again.stdout + again.stderr  # nothing installed the second time
    assert stamp.stat().st_mtime_ns == before


def grab(display: str, window: str) -> np.ndarray:
    """The window's pixels, as the X server has them (ImageMagick's import)."""
    shot = subprocess.run(
        [system_tool("import", package="imagemagick"), "-display", display, "-window", window,
         "png:-"],
        capture_output=True, check=True, timeout=30,
    ).stdout  # fmt: skip
    return cv2.imdecode(np.frombuffer(shot, np.uint8), cv2.IMREAD_COLOR)


def xdotool(display: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [system_tool("xdotool", package="xdotool"), *args],
        env=dict(os.environ, DISPLAY=display), capture_output=True, text=True, timeout=30,
    )  # fmt: skip


def test_make_run_shows_the_overlay_in_a_window(gui_venv, xserver):
    venv, _ = gui_venv
    video = need(VIDEO_480)
    run = subprocess.Popen(
        [system_tool("make", package="make"), "--no-print-directory", "run", f"VENV={venv}",
         "EXTRAS=", f"SOURCE={video}", "ARGS=--realtime --loop"],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**{k: v for k, v in os.environ.items() if k not in MAKE_STATE}, "DISPLAY": xserver},
        start_new_session=True,
    )  # fmt: skip
    try:
        window, deadline = "", time.monotonic() + 90
        while not window and time.monotonic() < deadline and run.poll() is None:
            time.sleep(0.5)
            window = xdotool(xserver, "search", "--name", f"^{TITLE}$").stdout.split()
            window = window[0] if window else ""
        if not window:
            exited = run.poll() is not None
            pytest.fail(
                f"no window named {TITLE!r}"
                + (f"; make run ended: {run.stderr.read()}" if exited else " within 90 s")
            )
        time.sleep(2)  # the first frames drawn
        first = grab(xserver, window)
        time.sleep(1)
        second = grab(xserver, window)
        # the frame at its own size, not Qt's 400x300 default, and no toolbar above it
        assert first.shape == (480, 854, 3)
        assert first.std() > 20, "the window is blank"
        assert np.abs(first.astype(int) - second).mean() > 2, "the window shows a still picture"
        box = (first[..., 1] > 150) & (first[..., 0] < 80) & (first[..., 2] < 80)
        assert box.sum() > 200, "no green face box: the overlay is not drawn"
        if os.environ.get("FER_EDGE_WINDOW_SCREENSHOT"):  # how docs/window.png is made
            out = ROOT / "docs" / "window.png"
            cv2.imwrite(str(out), first, [cv2.IMWRITE_PNG_COMPRESSION, 9])
            assert out.stat().st_size < 200_000
        xdotool(xserver, "windowfocus", "--sync", window, "key", "q")
        out, err = run.communicate(timeout=60)
    finally:
        if run.poll() is None:
            os.killpg(run.pid, signal.SIGTERM)
            run.communicate(timeout=30)
    assert run.returncode == 0, err  # q closes the window and ends the run cleanly
    assert "frames, a face in" in err


def test_run_without_a_display_says_where_to_look(gui_venv):
    venv, _ = gui_venv
    video = need(VIDEO_480)
    common = (f"VENV={venv}", "EXTRAS=", f"SOURCE={video}", "ARGS=--max-frames 10")
    proc = make("run", *common, display=None, timeout=300)
    assert proc.returncode == 0, proc.stderr
    lines = [ln for ln in proc.stderr.splitlines() if "no display" in ln]
    assert len(lines) == 1, proc.stderr
    assert any(flag in lines[0] for flag in ("--events", "--dashboard", "--preview-port"))
    # a DISPLAY with no X server behind it (stale in tmux, a broken ssh -X): Qt would abort
    # the process; the run checks first and goes on without a window
    nowhere = free_display()
    proc = make("run", *common, display=nowhere, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert f"DISPLAY={nowhere} is set, but no X server there" in proc.stderr
    assert sum("no display" in ln for ln in proc.stderr.splitlines()) == 1


# Last: it turns the module's venv headless.
def test_gui_0_swaps_in_the_headless_wheel(gui_venv, xserver):
    venv, _ = gui_venv
    proc = make("setup", f"VENV={venv}", "EXTRAS=", "GUI=0", display=xserver)
    assert proc.returncode == 0, proc.stderr
    assert "removing opencv-python (one OpenCV wheel per venv)" in proc.stdout
    assert proc.stdout.strip().splitlines()[-1] == (
        f"make setup: {venv} has opencv-python-headless (no window), as GUI=0 was given; "
        "GUI=1 switches"
    )
    assert opencv_wheels(venv) == ["opencv-python-headless"]
    # both wheels write cv2/: the swap must leave a whole, headless one that decodes the video
    probe = (
        "import sys, cv2; ok, frame = cv2.VideoCapture(sys.argv[1]).read(); "
        "gui = [ln.split()[-1] for ln in cv2.getBuildInformation().splitlines() if 'GUI:' in ln]; "
        "print(ok, frame.shape, gui)"
    )
    probed = subprocess.run(
        [str(venv / "bin" / "python"), "-c", probe, str(need(VIDEO_480))],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert probed.stdout.strip() == "True (480, 854, 3) ['NONE']", probed.stderr
    assert [p.name for p in venv.glob(".installed-*")] == [".installed-edge"]
    # the choice outlives the display: a plain `make setup` keeps it and installs nothing
    again = make("setup", f"VENV={venv}", "EXTRAS=", display=xserver)
    assert "pip" not in again.stdout + again.stderr
    assert f"as {venv}/.gui keeps the GUI=0 given before" in again.stdout
    # a display and the headless wheel: one line saying how to get the window
    run = make(
        "run", f"VENV={venv}", "EXTRAS=", f"SOURCE={need(VIDEO_480)}", display=xserver, timeout=300
    )
    line = one_line_error(run)
    assert "no GUI" in line and "make setup GUI=1" in line


# --- The README's "First ten minutes", typed as printed in a fresh copy of the project ---

FIRST_TEN_MINUTES = (
    "make setup",
    "make run",
    "make help",
    "make run SOURCE=clip.mp4",
    'make run SOURCE=clip.mp4 ARGS="--headless --events out.jsonl --summary-csv summary.csv'
    ' --plot timeline.png"',
    "fer-edge run --source clip.mp4 --headless --events -",
)


def readme_commands(section_start: str, section_end: str) -> list[str]:
    """The shell lines of the README's ```bash blocks between two headings, comments cut."""
    text = (ROOT / "README.md").read_text()
    section = text.split(section_start, 1)[1].split(section_end, 1)[0]
    blocks = re.findall(r"^```bash\n(.*?)^```", section, re.S | re.M)
    return [re.split(r"\s+#\s", ln)[0].strip() for b in blocks for ln in b.splitlines() if ln]


@pytest.fixture(scope="module")
def fresh_copy(tmp_path_factory) -> Path:
    """The project as `git clone` gives it (tracked files, as they are in the working tree), with
    ../shared beside it and the user's own clip.mp4 (the 480p test video) in its root."""
    base = tmp_path_factory.mktemp("first-ten-minutes")
    copy = base / "fer-edge"
    files = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT, capture_output=True, check=True,
    ).stdout.decode().split("\0")  # fmt: skip
    for name in filter(None, files):
        src = ROOT / name
        if src.is_file():
            (copy / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, copy / name)
    (base / "shared").symlink_to(SHARED)
    shutil.copy(need(VIDEO_480), copy / "clip.mp4")
    return copy


def typed(line: str, cwd: Path, display: str | None, **popen) -> subprocess.Popen:
    """`line` run by bash in `cwd` as a user types it: the venv's bin on PATH (as after `make
    setup` and activating it), none of the surrounding make's or pytest's state."""
    env = {k: v for k, v in os.environ.items() if k not in MAKE_STATE}
    env["PATH"] = f"{cwd / '.venv' / 'bin'}:{env.get('PATH', '/usr/bin:/bin')}"
    env.pop("VIRTUAL_ENV", None)
    if display:
        env["DISPLAY"] = display
    return subprocess.Popen(
        ["bash", "-c", line], cwd=cwd, env=env, text=True, start_new_session=True,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, **popen,
    )  # fmt: skip


def test_the_readme_first_ten_minutes_as_printed(fresh_copy, xserver):
    """Every command of "A webcam on your laptop" and "A video file" exactly as the README
    prints it, from the root of a fresh copy, on a machine with a display (Xvfb) and no camera."""
    printed = readme_commands("## First ten minutes", "### The dashboard")
    assert tuple(printed) == FIRST_TEN_MINUTES, "the README's commands changed: test the new ones"

    def done(line: str, timeout: int = 300) -> tuple[int, str, str]:
        proc = typed(line, fresh_copy, xserver)
        out, err = proc.communicate(timeout=timeout)
        return proc.returncode, out, err

    # make setup: the whole venv, with the window's OpenCV as a display is there
    code, out, err = done(printed[0], timeout=1500)
    assert code == 0, out[-3000:] + err[-3000:]
    said = out.strip().splitlines()[-1]
    assert said.startswith("make setup: .venv has opencv-python (the overlay window), as a display")
    assert opencv_wheels(fresh_copy / ".venv") == ["opencv-python"]

    # make run: camera 0 does not exist here; one line says so and what to do instead
    code, out, err = done(printed[1])
    assert code == 2 and "Traceback" not in err, err
    errors = [ln for ln in err.splitlines() if "error:" in ln]
    assert len(errors) == 1 and "camera 0" in errors[0] and "SOURCE=" in errors[0], err

    code, out, err = done(printed[2], timeout=60)
    assert code == 0 and "run" in out and "$(" not in out, out + err

    # make run SOURCE=clip.mp4: a window shows the clip; the run ends by itself at its end
    run = typed(printed[3], fresh_copy, xserver)
    try:
        seen, deadline = False, time.monotonic() + 120
        while not seen and run.poll() is None and time.monotonic() < deadline:
            found = xdotool(xserver, "search", "--name", f"^{TITLE}$").stdout.split()
            seen = bool(found) and grab(xserver, found[0]).std() > 20
            time.sleep(0.2)
        out, err = run.communicate(timeout=300)
    finally:
        if run.poll() is None:
            os.killpg(run.pid, signal.SIGTERM)
            run.communicate(timeout=30)
    assert seen, f"no {TITLE!r} window with a picture while the clip played: {err[-2000:]}"
    assert run.returncode == 0, err[-3000:]
    assert "no display" not in err and "Traceback" not in err, err[-3000:]
    assert "what the run saw (1 face" in out and "face 0: mostly " in out, out

    # the results as files
    code, out, err = done(printed[4])
    assert code == 0, err[-3000:]
    events = [json.loads(ln) for ln in (fresh_copy / "out.jsonl").read_text().splitlines()]
    assert len(events) > 300 and {e["track"] for e in events} == {0}
    header = (fresh_copy / "summary.csv").read_text().splitlines()[0]
    assert "neutral" in header and "surprise" in header, header
    assert (fresh_copy / "timeline.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    # the installed command: JSON lines on standard output, the same faces as the file above
    code, out, err = done(printed[5])
    assert code == 0, err[-3000:]
    streamed = [json.loads(ln) for ln in out.splitlines() if ln.startswith("{")]
    assert [e["label"] for e in streamed] == [e["label"] for e in events]
