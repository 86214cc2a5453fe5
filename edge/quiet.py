"""Native libraries' start-up chatter off at the default log level, all of it back with
`--log-level DEBUG`.

TensorFlow, absl, the CUDA probe, LiteRT's "Created TensorFlow Lite XNNPACK delegate" and
OpenCV's camera probes write from C++ straight to file descriptor 2, where Python's logging
cannot filter them. Some honour an environment variable read once at start-up; the rest are
caught by pointing fd 2 at a temporary file while the noisy call runs: what they wrote is
logged at DEBUG, or replayed on stderr when the call failed (it may say why).

Standard library only: the runtime imports this on a device without TensorFlow.
"""

from __future__ import annotations

import contextlib
import importlib.abc
import importlib.util
import logging
import os
import sys
import tempfile
import threading
import warnings

log = logging.getLogger(__name__)

# Read by the libraries when they load, so set before they are imported, and only where the
# user has not set them already.
QUIET_ENV = {
    "TF_CPP_MIN_LOG_LEVEL": "3",  # TF's C++ log: 3 also hides the E-level "failed call to cuInit"
    "OPENCV_LOG_LEVEL": "ERROR",  # "[ WARN:0] ... can't open camera by index"
}
# Python loggers of those libraries that warn about things a user cannot act on
QUIET_LOGGERS = ("absl", "tensorflow", "h5py")

_lock = threading.RLock()  # one redirect at a time; the same thread may nest them


def quiet_native_logs(debug: bool) -> None:
    """At any level but DEBUG: the environment variables above, the TensorFlow import under
    `native_stderr_to_debug`, and the libraries' Python loggers at ERROR. Call once, before
    any of those libraries is imported."""
    if debug:
        return
    for key, value in QUIET_ENV.items():
        os.environ.setdefault(key, value)
    for name in QUIET_LOGGERS:
        logging.getLogger(name).setLevel(logging.ERROR)
    # Keras' fit() defaults to shuffle=True and then warns that a tf.data pipeline (ours
    # shuffles itself) ignores it: nothing for a user to do
    warnings.filterwarnings("ignore", message="`shuffle=True` was passed", category=UserWarning)
    if "tensorflow" not in sys.modules and not any(
        isinstance(f, _QuietImport) for f in sys.meta_path
    ):
        sys.meta_path.insert(0, _QuietImport("tensorflow"))


@contextlib.contextmanager
def native_stderr_to_debug(fds: tuple[int, ...] = (2,)):
    """File descriptor 2 (and any other of `fds`, e.g. 1 for a library that prints) into a
    temporary file for the duration; what was written there is logged at DEBUG afterwards, or
    written back to stderr if the block raised. With DEBUG logging on, nothing is redirected
    (the lines appear as they are written)."""
    if log.isEnabledFor(logging.DEBUG):
        yield
        return
    with _lock, tempfile.TemporaryFile() as captured:
        sys.stdout.flush()
        sys.stderr.flush()
        saved = {fd: os.dup(fd) for fd in fds}
        for fd in fds:
            os.dup2(captured.fileno(), fd)
        failed = True
        try:
            yield
            failed = False
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            for fd, copy in saved.items():
                os.dup2(copy, fd)
                os.close(copy)
            captured.seek(0)
            text = captured.read().decode(errors="replace")
            if failed and text:
                sys.stderr.write(text)
                sys.stderr.flush()
            for line in text.splitlines():
                log.debug("native: %s", line)


class _QuietImport(importlib.abc.MetaPathFinder):
    """Runs the first import of one top-level package under `native_stderr_to_debug`: importing
    TensorFlow prints absl and CUDA lines that no environment variable turns off."""

    def __init__(self, name: str):
        self.name = name

    def find_spec(self, fullname, path=None, target=None):
        if fullname != self.name:
            return None
        sys.meta_path.remove(self)  # once; and find_spec below must not find this finder
        spec = importlib.util.find_spec(fullname)
        if spec is None or spec.loader is None:
            return spec
        spec.loader = _QuietLoader(spec.loader)
        return spec


class _QuietLoader(importlib.abc.Loader):
    def __init__(self, loader):
        self._loader = loader

    def __getattr__(self, name):  # everything else (resources, source) is the real loader's
        return getattr(self._loader, name)

    def create_module(self, spec):
        return self._loader.create_module(spec)

    def exec_module(self, module):
        with native_stderr_to_debug():
            self._loader.exec_module(module)


def debug_requested(argv: list[str]) -> bool:
    """Whether the command line asks for `--log-level DEBUG` (read before argparse runs, since
    the environment must be set before any library loads)."""
    for i, arg in enumerate(argv):
        if arg in ("--log-level", "--log_level") and i + 1 < len(argv):
            if argv[i + 1].upper() == "DEBUG":
                return True
        elif arg.split("=", 1)[0] in ("--log-level", "--log_level") and "=" in arg:
            if arg.split("=", 1)[1].upper() == "DEBUG":
                return True
    return False


def stdout_gone() -> None:
    """After a BrokenPipeError on stdout (the reader of a pipe left): point stdout at
    /dev/null so the interpreter's final flush does not fail again (the Python docs' recipe,
    "Note on SIGPIPE")."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)
