"""Moved to `fer_edge.evaluation.ferplus` (evaluation reads the FER+ votes without TensorFlow).

Kept only for importers written before the move (train/calibrate.py); import from
`fer_edge.evaluation.ferplus` instead. Delete once nothing imports this name.
"""

from fer_edge.evaluation.ferplus import *  # noqa: F403
