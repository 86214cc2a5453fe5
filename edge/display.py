"""Whether the overlay window has a screen to open on.

Asked before OpenCV opens a window, because the GUI wheel (opencv-python, Qt) aborts the whole
process when $DISPLAY names an X server it cannot reach: a stale $DISPLAY inside tmux, `ssh -X`
without a working forward, sudo without the user's Xauthority.
"""

from __future__ import annotations

import ctypes
import logging
import os
import sys

log = logging.getLogger(__name__)


def x_server_answers(display: str) -> bool:
    """True when the X server `display` lets this process in (what Qt's xcb needs too)."""
    try:
        xlib = ctypes.CDLL("libX11.so.6")
    except OSError:  # no Xlib: no X client, OpenCV's Qt included, can open a window here
        return False
    xlib.XOpenDisplay.argtypes = [ctypes.c_char_p]
    xlib.XOpenDisplay.restype = ctypes.c_void_p
    xlib.XCloseDisplay.argtypes = [ctypes.c_void_p]
    handle = xlib.XOpenDisplay(display.encode())
    if not handle:
        return False
    xlib.XCloseDisplay(handle)
    return True


def display_available() -> bool:
    """True when a window can open: always on macOS and Windows; on Linux an X server that
    answers at $DISPLAY, or a Wayland session."""
    if not sys.platform.startswith("linux"):
        return True
    x = os.environ.get("DISPLAY")
    if x:
        if x_server_answers(x):
            return True
        log.warning("DISPLAY=%s is set, but no X server there lets this user in", x)
        return False
    return bool(os.environ.get("WAYLAND_DISPLAY"))
