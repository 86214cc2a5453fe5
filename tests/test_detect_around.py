"""Tracked-square detection's geometry with numbers worked out by hand: which square of the
detector's copy is searched, at what size the detector sees it, where its box lands back in
the frame, which detection wins, and when a whole-frame pass is cheaper.

The detector here is a real one for a simple world (tests/scenes.py: bright squares on black),
so the squares can be checked exactly. YuNet on the real video is tests/test_latency_levers.py."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from fer_edge.edge.detectors import detect_around
from fer_edge.edge.types import Box, Frame
from scenes import BrightSquares, frame_with


def close(a: Box, b: tuple, tol: int = 2) -> bool:
    return all(abs(p - q) <= tol for p, q in zip(a.as_tuple(), b))


def test_a_face_is_searched_in_a_square_twice_its_size_and_lands_on_its_box():
    # 640 x 480 frame, detector copy 320 x 240 (factor 2); a 100-px face is 50 px in the copy:
    # shrunk to 48 px for the detector (x 0.96), square 2 x 48 = 96 px = 100 copy pixels,
    # centred on the old box: x0 = 125 - 50 = 75, y0 = 85 - 50 = 35
    det = BrightSquares()
    frame = frame_with((200, 120, 100, 100))
    (got,) = detect_around(det, frame, [Box(200, 120, 100, 100)])
    assert close(got, (200, 120, 100, 100))
    (seen,) = det.seen
    assert seen.shape == (96, 96, 3)
    # the face sits where the square puts it: copy x 100..149 -> square 25..74 -> x 0.96
    ys, xs = np.nonzero(seen[..., 0] > 127)
    assert abs(xs.min() - 24) <= 1 and abs(xs.max() - 71) <= 1
    assert abs(ys.min() - 24) <= 1 and abs(ys.max() - 71) <= 1
    # the face moved 10 px right since the last box: found where it is now
    det.seen.clear()
    (moved,) = detect_around(det, frame_with((210, 120, 100, 100)), [Box(200, 120, 100, 100)])
    assert close(moved, (210, 120, 100, 100))


def test_a_small_face_is_searched_in_a_square_of_at_least_size_pixels_not_enlarged():
    det = BrightSquares()
    # 40 px face = 20 copy px: 2 x 20 = 40 < 96, so a 96-px square, cut 1:1
    (got,) = detect_around(det, frame_with((300, 200, 40, 40)), [Box(300, 200, 40, 40)])
    assert close(got, (300, 200, 40, 40), tol=0)
    assert det.seen[0].shape == (96, 96, 3)
    det.seen.clear()
    (got,) = detect_around(det, frame_with((300, 200, 40, 40)), [Box(300, 200, 40, 40)], size=64)
    assert det.seen[0].shape == (64, 64, 3) and close(got, (300, 200, 40, 40), tol=0)
    # grow: 4 x 20 = 80 copy px, rounded up to 96 (a multiple of 32)
    det.seen.clear()
    detect_around(det, frame_with((300, 200, 40, 40)), [Box(300, 200, 40, 40)], size=32, grow=4)
    assert det.seen[0].shape == (96, 96, 3)
    # 66 px = 33 copy px: 4 x 33 = 132, rounded up to 160 (five times 32)
    det.seen.clear()
    detect_around(det, frame_with((300, 200, 66, 66)), [Box(300, 200, 66, 66)], size=32, grow=4)
    assert det.seen[0].shape == (160, 160, 3)


def test_a_large_face_is_shrunk_to_face_px_and_its_square_kept_inside_the_copy():
    det = BrightSquares()
    # 300 px face = 150 copy px: x 48/150, 2 x 48 = 96 px = 300 copy px, more than the copy's
    # 240 rows: the square is 240 copy px, shown at 96 px, and its box still lands
    (got,) = detect_around(det, frame_with((150, 90, 300, 300)), [Box(150, 90, 300, 300)])
    assert det.seen[0].shape == (96, 96, 3)
    assert close(got, (150, 90, 300, 300), tol=4)
    # a face at the bottom-right corner: the square moves inside the copy, not padded
    det.seen.clear()
    (got,) = detect_around(det, frame_with((560, 400, 80, 80)), [Box(560, 400, 80, 80)])
    (seen,) = det.seen
    assert seen.shape == (96, 96, 3)
    ys, xs = np.nonzero(seen[..., 0] > 127)
    assert (xs.max(), ys.max()) == (95, 95) and (xs.min(), ys.min()) == (56, 56)
    assert close(got, (560, 400, 80, 80), tol=0)
    det.seen.clear()
    (got,) = detect_around(det, frame_with((0, 0, 80, 80)), [Box(0, 0, 80, 80)])
    ys, xs = np.nonzero(det.seen[0][..., 0] > 127)
    assert (xs.min(), ys.min(), xs.max(), ys.max()) == (0, 0, 39, 39)
    assert close(got, (0, 0, 80, 80), tol=0)


def test_the_detection_closest_to_the_old_box_wins_and_a_far_one_is_lost():
    det = BrightSquares()
    # two faces in one square: the one overlapping the old box wins, whichever comes first
    frame = frame_with((300, 200, 40, 40), (360, 200, 20, 20))
    (got,) = detect_around(det, frame, [Box(302, 202, 40, 40)])
    assert close(got, (300, 200, 40, 40), tol=0)
    (got,) = detect_around(det, frame, [Box(358, 198, 24, 24)])
    assert close(got, (360, 200, 20, 20), tol=0)
    # the face moved a half-width: IoU with the old box 1/3 (> 0.1), still that face;
    # moved seven-eighths: IoU 0.07, taken for another face, so this one was lost
    (got,) = detect_around(det, frame_with((320, 200, 40, 40)), [Box(300, 200, 40, 40)])
    assert close(got, (320, 200, 40, 40), tol=0)
    (lost,) = detect_around(det, frame_with((335, 200, 40, 40)), [Box(300, 200, 40, 40)])
    assert lost is None
    # only a face that does not overlap the old box at all: the face was lost (None)
    (lost,) = detect_around(det, frame_with((340, 200, 20, 20)), [Box(300, 200, 30, 30)])
    assert lost is None
    (lost,) = detect_around(det, frame_with(), [Box(300, 200, 40, 40)])
    assert lost is None


def test_one_result_per_tracked_face_in_order_or_none_when_a_whole_pass_is_cheaper():
    det = BrightSquares()
    faces = [(40, 40, 40, 40), (500, 300, 60, 60)]
    got = detect_around(det, frame_with(*faces), [Box(*f) for f in faces])
    assert [close(g, f, tol=0) for g, f in zip(got, faces)] == [True, True]
    # 96-px squares: 320 x 240 = 76,800 copy px; 8 squares are 73,728 (searched), 9 are
    # 82,944 (one whole-frame pass is cheaper: None, and the detector is not called)
    det.seen.clear()
    eight = [Box(40 * i, 0, 40, 40) for i in range(8)]
    assert len(detect_around(det, frame_with(), eight)) == 8 and len(det.seen) == 8
    det.seen.clear()
    assert detect_around(det, frame_with(), eight + [Box(0, 100, 40, 40)]) is None
    assert det.seen == []
    # squares exactly as large as the copy together: already not cheaper (160-px squares)
    three = [Box(40 * i, 0, 40, 40) for i in range(3)]
    assert detect_around(det, frame_with(), three, size=160) is None
    assert len(detect_around(det, frame_with(), three[:2], size=160)) == 2


@pytest.mark.parametrize("grey", [False, True])
def test_a_frame_with_a_small_copy_is_searched_in_that_copy(grey):
    """picamera2's lores stream: the copy comes with the frame (small_scale = its width /
    the frame's), and boxes map back through it."""
    big = frame_with((400, 240, 200, 200), size=(720, 1280))
    small = cv2.resize(big.image, (320, 180), interpolation=cv2.INTER_AREA)
    small = cv2.cvtColor(small, cv2.COLOR_BGR2GRAY) if grey else small
    frame = Frame(big.image, 0, 0.0, small=small, small_scale=0.25)
    det = BrightSquares()
    (got,) = detect_around(det, frame, [Box(400, 240, 200, 200)])
    assert close(got, (400, 240, 200, 200), tol=4)
    assert det.seen[0].shape[:2] == (96, 96) and (det.seen[0].ndim == 2) == grey


def test_the_square_is_cut_from_the_copy_shrunk_the_way_the_detector_shrinks_it():
    """--detect-resize holds for tracked squares too: the square comes from the frame shrunk
    with the detector's interpolation (INTER_LINEAR or INTER_AREA, which differ at 800 -> 320
    px on a textured frame); a detector of the user's own without `resize` gets INTER_AREA.
    A 75-px face at (250, 150) is 30 px in the copy (factor 2.5): not shrunk for the detector,
    so the square is 96 copy pixels, x0 = 100 + 15 - 48 = 67, y0 = 60 + 15 - 48 = 27."""
    rng = np.random.default_rng(7)
    image = rng.integers(0, 100, (600, 800, 3), dtype=np.uint8)
    image[150:225, 250:325] = 255
    frame = Frame(image, 0, 0.0)
    box = Box(250, 150, 75, 75)

    class Plain:  # a user's detector: the Detector protocol only, no `resize`
        name, width = "plain", 320

        def __init__(self):
            self.inner = BrightSquares(320)
            self.seen = self.inner.seen

        def detect(self, frame, width=None):
            return self.inner.detect(frame, width)

        def detect_image(self, image):
            return self.inner.detect_image(image)

    squares = {}
    for name, det in (("linear", BrightSquares(320)), ("area", BrightSquares(320)),
                      ("plain", Plain())):  # fmt: skip
        if name == "linear":
            det.resize = "linear"
        (found,) = detect_around(det, frame, [box])
        assert close(found, box.as_tuple(), 3)
        (squares[name],) = det.seen
    for name, flag in (("linear", cv2.INTER_LINEAR), ("area", cv2.INTER_AREA)):
        copy = cv2.resize(image, (320, 240), interpolation=flag)
        np.testing.assert_array_equal(squares[name], copy[27:123, 67:163])
    np.testing.assert_array_equal(squares["plain"], squares["area"])
    assert not np.array_equal(squares["linear"], squares["area"])


def test_a_wide_face_is_sized_by_its_width_a_tall_one_by_its_height():
    # 200 x 100 px = 100 x 50 copy px: the larger side, 100, is shrunk to 48 (x 0.48), so the
    # square is 96 px = 200 copy px and the face 48 x 24 in it; the same turned on its side
    for w, h in ((200, 100), (100, 200)):
        det = BrightSquares()
        (got,) = detect_around(det, frame_with((220, 140, w, h)), [Box(220, 140, w, h)])
        (seen,) = det.seen
        ys, xs = np.nonzero(seen[..., 0] > 127)
        assert seen.shape == (96, 96, 3)
        assert abs(xs.max() - xs.min() + 1 - w * 0.24) <= 1, (w, h, xs.min(), xs.max())
        assert abs(ys.max() - ys.min() + 1 - h * 0.24) <= 1, (w, h, ys.min(), ys.max())
        assert close(got, (220, 140, w, h), tol=3)


def test_a_large_face_is_seen_as_its_window_of_the_copy_shrunk_bit_exactly():
    """800 x 600 frame, copy 320 x 240 (factor 2.5); a 250-px face is 100 copy px: x 0.48,
    so the square is 96 / 0.48 = 200 copy px at x0 = 110 + 50 - 100 = 60, y0 = 70 + 50 - 100
    = 20, shrunk to 96 px with INTER_LINEAR_EXACT (the same bits on every CPU); the detector's
    score comes back with the box. Two such squares (2 x 200^2 = 80,000 copy px) are more
    than the whole copy (76,800): one whole-frame pass is cheaper."""
    rng = np.random.default_rng(11)
    image = rng.integers(0, 100, (600, 800, 3), dtype=np.uint8)
    image[175:425, 275:525] = 255
    det = BrightSquares()
    (got,) = detect_around(det, Frame(image, 0, 0.0), [Box(275, 175, 250, 250)])
    copy = cv2.resize(image, (320, 240), interpolation=cv2.INTER_AREA)
    expected = cv2.resize(copy[20:220, 60:260], (96, 96), interpolation=cv2.INTER_LINEAR_EXACT)
    np.testing.assert_array_equal(det.seen[0], expected)
    assert close(got, (275, 175, 250, 250), tol=3) and got.score == 0.9
    two = [Box(0, 0, 250, 250), Box(540, 340, 250, 250)]
    assert detect_around(det, Frame(image, 0, 0.0), two) is None
    assert len(detect_around(det, Frame(image, 0, 0.0), two[:1])) == 1


def test_in_a_portrait_frame_the_square_is_bounded_by_the_copys_width():
    """600 x 800 (portrait, a phone held upright): copy 320 x 427. A 400-px face is 213 copy
    px, x 0.225: its square would be 427 copy px, more than the copy is wide; it is cut to
    320 x 320 and the face still lands on its box."""
    det = BrightSquares()
    frame = frame_with((100, 200, 400, 400), size=(800, 600))
    (got,) = detect_around(det, frame, [Box(100, 200, 400, 400)])
    assert det.seen[0].shape == (96, 96, 3)
    assert close(got, (100, 200, 400, 400), tol=4)
