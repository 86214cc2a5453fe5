"""The runtime's commands: `run`, `checks`, `capture`. Also reachable as `python -m fer_edge.edge`.

Nothing here imports TensorFlow, `train` or `convert`: a device needs only the `edge` extra.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import logging
import signal
import sys
import time
from pathlib import Path

from fer_edge.edge.cliframe import (
    command_parser,
    field_comments,
    non_negative_int,
    positive_int,
    run_command,
    sync_seconds,
)
from fer_edge.edge.config import DEFAULTS, RuntimeConfig, model_path
from fer_edge.edge.errors import ConfigError, FerEdgeError
from fer_edge.edge.fileio import DEFAULT_EVENTS_SYNC
from fer_edge.edge.quiet import debug_requested, quiet_native_logs, stdout_gone
from fer_edge.edge.sink_options import add_sink_flags

log = logging.getLogger(__name__)


def add_runtime_flags(p: argparse.ArgumentParser, source_default: str = DEFAULTS.source) -> None:
    """Flags shared by run, checks and capture: model, detector, source. Defaults and help
    come from RuntimeConfig."""
    helps = field_comments(RuntimeConfig)
    p.add_argument("--model", default=DEFAULTS.model, help=helps["model"])
    p.add_argument("--tta", action="store_true", default=DEFAULTS.tta, help=helps["tta"])
    p.add_argument("--source", default=source_default, help=helps["source"])
    p.add_argument("--threads", type=positive_int, default=DEFAULTS.threads, help=helps["threads"])
    p.add_argument(
        "--detector", default=DEFAULTS.detector, choices=["yunet", "haar"], help=helps["detector"]
    )
    p.add_argument("--yunet-model", default=DEFAULTS.yunet_model, help=helps["yunet_model"])
    p.add_argument(
        "--detect-width", type=int, default=DEFAULTS.detect_width, help=helps["detect_width"]
    )
    p.add_argument(
        "--detect-resize",
        default=DEFAULTS.detect_resize,
        choices=["linear", "area"],
        help=helps["detect_resize"],
    )
    for name in ("detect_every", "classify_every", "max_faces"):
        p.add_argument(
            f"--{name}", type=positive_int, default=getattr(DEFAULTS, name), help=helps[name]
        )
    for name in ("full_detect_every", "cv_threads", "decode_threads"):
        p.add_argument(
            f"--{name}", type=non_negative_int, default=getattr(DEFAULTS, name), help=helps[name]
        )
    p.add_argument(
        "--adaptive-width",
        action=argparse.BooleanOptionalAction,
        default=DEFAULTS.adaptive_width,
        help=helps["adaptive_width"],
    )
    p.add_argument("--width", type=int, default=DEFAULTS.width, help=helps["width"])
    p.add_argument("--height", type=int, default=DEFAULTS.height, help=helps["height"])


def runtime_config(args: argparse.Namespace) -> RuntimeConfig:
    """The RuntimeConfig the parsed flags describe."""
    names = {f.name for f in dataclasses.fields(RuntimeConfig)}
    values = {k: v for k, v in vars(args).items() if k in names}
    if getattr(args, "no_smoothing", False):
        values["smoothing"] = False
    return RuntimeConfig(**values)


def build_parser() -> argparse.ArgumentParser:
    parser, sub = command_parser("python -m fer_edge.edge", __doc__.splitlines()[0])
    add_subcommands(sub)
    return parser


def add_subcommands(sub) -> None:
    p = sub.add_parser("run", help="live emotion detection")
    add_runtime_flags(p)
    p.add_argument("--headless", action="store_true", help="no window (events and/or preview only)")
    p.add_argument(
        "--events", default=None, help="append JSON Lines per face per frame to FILE ('-' = stdout)"
    )
    p.add_argument(
        "--events-sync",
        type=sync_seconds,
        default=DEFAULT_EVENTS_SYNC,
        metavar="SECONDS",
        help="flush --events FILE to disk (fdatasync) once its oldest unflushed line is this "
        "old: the most a power cut can take. 0 = after every frame (nothing lost; a journal "
        "commit per frame wears an SD card), off = leave it to the kernel (~5 s on ext4)",
    )
    p.add_argument("--max-frames", type=positive_int, default=None, help="stop after N frames")
    p.add_argument("--loop", action="store_true", help="restart a video file when it ends")
    p.add_argument(
        "--realtime",
        action="store_true",
        help="play a video file or image folder at its own frame rate, as a camera delivers it",
    )
    p.add_argument(
        "--no-smoothing", action="store_true", help="raw per-frame probabilities (no EMA per track)"
    )
    p.add_argument(
        "--preview-port", type=int, default=0, help="serve an MJPEG preview on this port"
    )
    p.add_argument("--preview-host", default="127.0.0.1", help="address the preview binds to")
    add_sink_flags(p)
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("checks", help="print what the runtime found")
    add_runtime_flags(p, source_default="")
    p.set_defaults(func=cmd_checks)

    p = sub.add_parser("capture", help="photograph a person for stage-2 fine-tuning")
    add_runtime_flags(p)
    p.add_argument("--label", required=True, help="class of the expression being captured")
    p.add_argument("--count", type=positive_int, default=20, help="photos to save")
    p.add_argument("--out", required=True, help="dataset folder; photos go to OUT/LABEL/")
    p.add_argument("--interval", type=float, default=0.5, help="seconds between photos")
    p.add_argument("--countdown", type=int, default=3, help="seconds before the first photo")
    p.add_argument("--headless", action="store_true", help="no preview window")
    p.set_defaults(func=cmd_capture)


@contextlib.contextmanager
def stop_on_sigterm():
    """SIGTERM (systemd stop, kill) unwinds like Ctrl-C so every `with` block closes its files."""

    def handler(signum, frame):
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def open_sinks(args, labels: tuple[str, ...], show: bool, stack: contextlib.ExitStack) -> list:
    """The sinks the flags ask for, each entered on `stack` so it closes on the way out."""
    from fer_edge.edge.sinks import EventWriter, MjpegServer, Window

    sinks = []
    if args.events:
        sinks.append(EventWriter(args.events, labels, sync_every=args.events_sync))
    if show:
        sinks.append(Window())
    if args.preview_port:
        sinks.append(MjpegServer(args.preview_port, args.preview_host))
    return [stack.enter_context(sink) for sink in sinks]


def where_to_look(args, explicit: bool) -> str:
    """The one line a run without a window logs: where its results can be seen."""
    flags = ("events", "dashboard", "preview_port", "mqtt", "summary_csv", "plot")
    given = ["--" + f.replace("_", "-") for f in flags if getattr(args, f)]
    why = "--headless" if explicit else "no display found"
    if given:
        return f"{why}: no window; results go to {', '.join(given)}"
    return (
        f"{why}: no window, and only a summary at the end; to see results use --events - "
        "(JSON lines), --dashboard 8080 (a web page), or --summary-csv FILE / --plot FILE.png"
    )


def cmd_run(args) -> int:
    from fer_edge.edge.recognizer import EmotionRecognizer
    from fer_edge.edge.sinks import display_available, draw_overlay
    from fer_edge.edge.sources import open_source
    from fer_edge.edge.summary import RunSummary, check_output, require_matplotlib

    # MQTT and dashboard code is imported only when asked for; bad options fail before the model
    mqtt_settings = dash_settings = None
    if args.mqtt:
        from fer_edge.edge.mqtt_config import MqttSettings

        mqtt_settings = MqttSettings.from_args(args)
    if args.dashboard:
        from fer_edge.edge.dashboard import DashboardSettings

        dash_settings = DashboardSettings.from_args(args)
    if args.summary_csv:
        check_output("--summary-csv", args.summary_csv)
    if args.plot:
        check_output("--plot", args.plot)
        require_matplotlib(args.plot)
    pipeline = EmotionRecognizer(config=runtime_config(args)).pipeline()
    labels = pipeline.classifier.labels
    show = not args.headless and display_available()
    if not show:
        log.info(where_to_look(args, explicit=args.headless))
    summary = RunSummary(labels)
    frames = with_face = 0
    t0 = time.perf_counter()
    with contextlib.ExitStack() as stack:
        stack.enter_context(stop_on_sigterm())
        source = stack.enter_context(
            open_source(
                args.source,
                loop=args.loop,
                width=args.width,
                height=args.height,
                lores_width=args.detect_width,
                decode_threads=args.decode_threads,
            )
        )
        sinks = [summary, *open_sinks(args, labels, show, stack)]
        if mqtt_settings:
            from fer_edge.edge.mqtt import MqttSink

            sinks.append(stack.enter_context(MqttSink(mqtt_settings, labels)))
        dashboard = None
        if dash_settings:
            from fer_edge.edge.dashboard import Dashboard, source_name

            info = {
                "model": Path(pipeline.classifier.path).name,
                "source": source_name(args.source),
            }
            dashboard = stack.enter_context(Dashboard(dash_settings, labels, info))
            sinks.append(dashboard)
        drawn = any(sink.needs_canvas for sink in sinks)
        realtime, t_play = args.realtime and not source.live, time.perf_counter()
        t_first = None  # the frame rate counts from the first frame: opening is not throughput
        try:
            for frame in source.frames():
                if t_first is None:
                    t_first = time.perf_counter()
                if realtime:  # a file at its own pace: frame.t is its media time
                    time.sleep(max(0.0, frame.t - (time.perf_counter() - t_play)))
                result = pipeline.process(frame)
                frames += 1
                with_face += bool(result.faces)
                canvas = None
                if drawn or (dashboard is not None and dashboard.wants_frame()):
                    fps = frames / max(1e-9, time.perf_counter() - t_first)
                    canvas = draw_overlay(frame.image, result, labels, fps)
                if not all([sink.write(result, canvas) for sink in sinks]):
                    break
                if args.max_frames and frames >= args.max_frames:
                    break
        except KeyboardInterrupt:
            log.info("stopping")
        except BrokenPipeError:  # `--events - | head`: the reader left, so the run is done
            stdout_gone()
            log.debug("stdout closed by its reader; stopping")
        t_last = time.perf_counter()
    first = (t_first or t_last) - t0
    log.info(
        "%d frames, a face in %d (%.1f%%), %.1f FPS (first frame %.2f s after start)",
        frames,
        with_face,
        100.0 * with_face / max(1, frames),
        frames / max(1e-9, t_last - (t_first or t_last)),
        first,
    )
    # stdout may carry the events (`--events -`); the summary then goes beside the log
    print("\n".join(summary.lines()), file=sys.stderr if args.events == "-" else sys.stdout)
    if args.summary_csv:
        summary.write_csv(args.summary_csv)
        log.info("per-second shares of each emotion per face in %s", args.summary_csv)
    if args.plot:
        summary.write_plot(args.plot)
        log.info("emotion timeline in %s", args.plot)
    return 0


def cmd_checks(args) -> int:
    import cv2
    from fer_edge.edge.classifier import Classifier
    from fer_edge.edge.detectors import default_yunet_path, make_detector

    rows: list[tuple[str, str]] = []
    c = Classifier(model_path(args.model, args.tta), threads=args.threads)
    for key, value in c.describe().items():
        rows.append((key, str(value)))
    rows.append(
        (
            "contract",
            f"input {c.contract.input_size}px grey, margin {c.contract.margin}, "
            f"test-time views {c.contract.tta}",
        )
    )
    rows.append(
        (
            "opencv",
            f"{cv2.__version__} (Haar: {'yes' if hasattr(cv2, 'CascadeClassifier') else 'no'})",
        )
    )
    try:
        det = make_detector(
            args.detector, width=args.detect_width, yunet_model=args.yunet_model or None
        )
        where = getattr(det, "path", "bundled cascade")
        rows.append(("detector", f"{det.name} ({where}), detect width {args.detect_width}"))
    except FerEdgeError as exc:
        rows.append(("detector", f"unavailable: {exc}"))
    if args.detector != "yunet":
        rows.append(("yunet", str(default_yunet_path() or "not found")))
    try:
        import picamera2  # noqa: F401

        rows.append(("picamera2", "available"))
    except ImportError:
        rows.append(("picamera2", "not installed (only needed for the Pi camera)"))
    source_error = None
    if args.source:
        from fer_edge.edge.sources import open_source

        try:
            with open_source(args.source) as src:
                rows.append(("source", f"{args.source}: {src.name} ok"))
        except FerEdgeError as exc:
            source_error = exc
    width = max(len(k) for k, _ in rows)
    for key, value in rows:
        print(f"{key:>{width}}  {value}")
    if source_error is not None:  # the source asked for is what the user came to check
        raise source_error
    return 0


def cmd_capture(args) -> int:
    import cv2
    from fer_edge.edge.detectors import make_detector
    from fer_edge.edge.fileio import atomic_write_bytes
    from fer_edge.edge.sinks import Window, display_available
    from fer_edge.edge.sources import open_source

    if not args.label.strip() or "/" in args.label:
        raise ConfigError(f"--label {args.label!r}: give a class name such as happy")
    out = Path(args.out) / args.label
    out.mkdir(parents=True, exist_ok=True)
    detector = make_detector(
        args.detector, width=args.detect_width, yunet_model=args.yunet_model or None
    )
    saved, next_at = 0, time.monotonic() + max(0, args.countdown)
    print(f"capturing {args.count} '{args.label}' photos into {out}; make the expression now")
    with contextlib.ExitStack() as stack:
        stack.enter_context(stop_on_sigterm())
        src = stack.enter_context(open_source(args.source, width=args.width, height=args.height))
        show = not args.headless and display_available()
        window = stack.enter_context(Window("fer-edge capture")) if show else None
        try:
            for frame in src.frames():
                boxes = detector.detect(frame)
                now = time.monotonic()
                if window:
                    canvas = frame.image.copy()
                    for b in boxes:
                        cv2.rectangle(canvas, (b.x, b.y), (b.x + b.w, b.y + b.h), (0, 200, 0), 2)
                    if not window.write(None, canvas):
                        break
                if now < next_at or not boxes:
                    continue
                ok, jpg = cv2.imencode(".jpg", frame.image, [cv2.IMWRITE_JPEG_QUALITY, 95])
                name = out / f"{args.label}_{time.strftime('%Y%m%d-%H%M%S')}_{saved:03d}.jpg"
                atomic_write_bytes(name, jpg.tobytes())
                saved += 1
                print(f"  {saved}/{args.count} {name}")
                next_at = now + args.interval
                if saved >= args.count:
                    break
        except KeyboardInterrupt:
            pass
    print(f"saved {saved} photos in {out}")
    return 0 if saved else 1


def main(argv: list[str] | None = None) -> int:
    quiet_native_logs(debug_requested(sys.argv[1:] if argv is None else argv))
    return run_command(build_parser(), argv)
