"""The runtime's commands: `run`, `checks`, `capture`. Also reachable as `python -m edge`.

Nothing here imports TensorFlow, `train` or `convert`: a device needs only the `edge` extra.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import signal
import sys
import time
from pathlib import Path

from edge.errors import ConfigError, FerEdgeError

log = logging.getLogger("edge")

PROJECT_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_MODEL = PROJECT_ROOT / "models" / "fer_int8.tflite"


class OneLineParser(argparse.ArgumentParser):
    """argparse that reports a bad option in one line (no usage dump) and exits with 2."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def non_negative_int(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, got {value}")
    return value


def add_runtime_flags(p: argparse.ArgumentParser, source_default: str = "0") -> None:
    """Flags shared by run, capture and the benchmark: model, detector, source."""
    p.add_argument(
        "--model", default=str(DEFAULT_MODEL), help="TFLite model (its .json contract beside it)"
    )
    p.add_argument(
        "--source",
        default=source_default,
        help="camera index, 'picamera', video/image file, image folder, or rtsp/http URL",
    )
    p.add_argument(
        "--threads",
        type=positive_int,
        default=1,
        help="interpreter threads (1: on two cores, decoding and the pipeline use one each)",
    )
    p.add_argument("--detector", default="yunet", choices=["yunet", "haar"], help="face detector")
    p.add_argument(
        "--yunet_model", default=None, help="YuNet .onnx (default: models/, then ../shared/models/)"
    )
    p.add_argument(
        "--detect_width",
        type=int,
        default=320,
        help="detect on a copy this wide; boxes are mapped back (0 = full frame)",
    )
    p.add_argument(
        "--detect_every",
        type=positive_int,
        default=2,
        help="run the detector every N frames and hold boxes in between",
    )
    p.add_argument(
        "--classify_every",
        type=positive_int,
        default=2,
        help="classify every N frames; frames with held boxes in between reuse the last result",
    )
    p.add_argument(
        "--detect-resize",
        default="linear",
        choices=["linear", "area"],
        help="how the detector's copy is shrunk: linear (fast) or area (smoothest, slower)",
    )
    p.add_argument(
        "--full-detect-every",
        type=non_negative_int,
        default=0,
        help="search the whole frame every N frames; detection passes in between look only "
        "around tracked faces (0 = always the whole frame)",
    )
    p.add_argument(
        "--adaptive-width",
        action=argparse.BooleanOptionalAction,
        default=False,
        help="narrower whole-frame passes while the tracked faces are large",
    )
    p.add_argument(
        "--max-faces", type=positive_int, default=16, help="largest faces classified per frame"
    )
    p.add_argument(
        "--cv-threads",
        type=non_negative_int,
        default=1,
        help="OpenCV worker threads (0 = OpenCV's default); decoding and LiteRT use the rest",
    )
    p.add_argument(
        "--width", type=int, default=0, help="requested camera width (0 = device default)"
    )
    p.add_argument("--height", type=int, default=0, help="requested camera height")


def command_parser(prog: str, description: str) -> tuple[OneLineParser, object]:
    """The top-level parser every entry point shares, and its subcommand registry."""
    parser = OneLineParser(prog=prog, description=description)
    parser.add_argument(
        "--log_level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"]
    )
    sub = parser.add_subparsers(
        dest="command", required=True, metavar="COMMAND", parser_class=OneLineParser
    )
    return parser, sub


def run_command(parser: argparse.ArgumentParser, argv: list[str] | None) -> int:
    """Parse, run the chosen subcommand, and turn a FerEdgeError into one line + exit 2."""
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=args.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    try:
        return int(args.func(args) or 0)
    except FerEdgeError as exc:
        print(f"{parser.prog}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"{parser.prog}: interrupted", file=sys.stderr)
        return 130


def build_parser() -> argparse.ArgumentParser:
    parser, sub = command_parser("python -m edge", __doc__.splitlines()[0])
    add_subcommands(sub)
    return parser


def add_subcommands(sub) -> None:
    fmt = argparse.ArgumentDefaultsHelpFormatter
    p = sub.add_parser("run", help="live emotion detection", formatter_class=fmt)
    add_runtime_flags(p)
    p.add_argument("--headless", action="store_true", help="no window (events and/or preview only)")
    p.add_argument(
        "--events", default=None, help="append JSON Lines per face per frame to FILE ('-' = stdout)"
    )
    p.add_argument("--max_frames", type=positive_int, default=None, help="stop after N frames")
    p.add_argument("--loop", action="store_true", help="restart a video file when it ends")
    p.add_argument("--no_smoothing", action="store_true", help="raw per-frame probabilities")
    p.add_argument(
        "--preview_port", type=int, default=0, help="serve an MJPEG preview on this port"
    )
    p.add_argument("--preview_host", default="127.0.0.1", help="address the preview binds to")
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("checks", help="print what the runtime found", formatter_class=fmt)
    add_runtime_flags(p, source_default="")
    p.set_defaults(func=cmd_checks)

    p = sub.add_parser(
        "capture", help="photograph a person for stage-2 fine-tuning", formatter_class=fmt
    )
    add_runtime_flags(p)
    p.add_argument("--label", required=True, help="class of the expression being captured")
    p.add_argument("--count", type=positive_int, default=20, help="photos to save")
    p.add_argument("--out", required=True, help="dataset folder; photos go to OUT/LABEL/")
    p.add_argument("--interval", type=float, default=0.5, help="seconds between photos")
    p.add_argument("--countdown", type=int, default=3, help="seconds before the first photo")
    p.add_argument("--headless", action="store_true", help="no preview window")
    p.set_defaults(func=cmd_capture)


def open_pipeline(args, smoothing: bool = True):
    from edge.classifier import Classifier
    from edge.detectors import make_detector
    from edge.pipeline import Pipeline, PipelineConfig, apply_thread_plan

    apply_thread_plan(args.cv_threads)
    classifier = Classifier(args.model, threads=args.threads)
    detector = make_detector(
        args.detector,
        width=args.detect_width,
        yunet_model=args.yunet_model,
        resize=args.detect_resize,
    )
    config = PipelineConfig(
        detect_every=args.detect_every,
        classify_every=args.classify_every,
        smoothing=smoothing,
        full_detect_every=args.full_detect_every,
        adaptive_width=args.adaptive_width,
        max_faces=args.max_faces,
    )
    return Pipeline(detector, classifier, config)


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


def cmd_run(args) -> int:
    from edge.sinks import EventWriter, MjpegServer, Window, display_available, draw_overlay
    from edge.sources import open_source

    pipeline = open_pipeline(args, smoothing=not args.no_smoothing)
    labels = pipeline.classifier.labels
    show = not args.headless and display_available()
    if not args.headless and not show:
        log.info("no display found; running headless")
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
            )
        )
        events = stack.enter_context(EventWriter(args.events, labels)) if args.events else None
        window = Window() if show else None
        if window:
            stack.callback(window.close)
        preview = MjpegServer(args.preview_port, args.preview_host) if args.preview_port else None
        if preview:
            stack.callback(preview.close)
        fps = None
        try:
            for frame in source.frames():
                result = pipeline.process(frame)
                frames += 1
                with_face += bool(result.faces)
                if events:
                    events.write(result)
                if window or preview:
                    fps = frames / max(1e-9, time.perf_counter() - t0)
                    canvas = draw_overlay(frame.image, result, labels, fps)
                    if preview:
                        preview.publish(canvas)
                    if window and not window.show(canvas):
                        break
                if args.max_frames and frames >= args.max_frames:
                    break
        except KeyboardInterrupt:
            log.info("stopping")
    wall = time.perf_counter() - t0
    log.info(
        "%d frames, a face in %d (%.1f%%), %.1f FPS",
        frames,
        with_face,
        100.0 * with_face / max(1, frames),
        frames / max(1e-9, wall),
    )
    return 0


def cmd_checks(args) -> int:
    import cv2

    from edge.classifier import Classifier
    from edge.detectors import default_yunet_path, make_detector

    rows: list[tuple[str, str]] = []
    c = Classifier(args.model, threads=args.threads)
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
        det = make_detector(args.detector, width=args.detect_width, yunet_model=args.yunet_model)
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
    if args.source:
        from edge.sources import open_source

        try:
            with open_source(args.source) as src:
                rows.append(("source", f"{args.source}: {src.name} ok"))
        except FerEdgeError as exc:
            rows.append(("source", f"unavailable: {exc}"))
    width = max(len(k) for k, _ in rows)
    for key, value in rows:
        print(f"{key:>{width}}  {value}")
    return 0


def cmd_capture(args) -> int:
    import cv2

    from edge.contract import atomic_write_bytes
    from edge.detectors import make_detector
    from edge.sinks import Window, display_available
    from edge.sources import open_source

    if not args.label.strip() or "/" in args.label:
        raise ConfigError(f"--label {args.label!r}: give a class name such as happy")
    out = Path(args.out) / args.label
    out.mkdir(parents=True, exist_ok=True)
    detector = make_detector(args.detector, width=args.detect_width, yunet_model=args.yunet_model)
    window = Window("fer-edge capture") if not args.headless and display_available() else None
    saved, next_at = 0, time.monotonic() + max(0, args.countdown)
    print(f"capturing {args.count} '{args.label}' photos into {out}; make the expression now")
    with stop_on_sigterm(), open_source(args.source, width=args.width, height=args.height) as src:
        try:
            for frame in src.frames():
                boxes = detector.detect(frame)
                now = time.monotonic()
                if window:
                    canvas = frame.image.copy()
                    for b in boxes:
                        cv2.rectangle(canvas, (b.x, b.y), (b.x + b.w, b.y + b.h), (0, 200, 0), 2)
                    if not window.show(canvas):
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
    if window:
        window.close()
    print(f"saved {saved} photos in {out}")
    return 0 if saved else 1


def main(argv: list[str] | None = None) -> int:
    return run_command(build_parser(), argv)
