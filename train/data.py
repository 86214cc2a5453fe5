"""Moved to `fer_edge.evaluation.data` (evaluation reads FER2013 without TensorFlow).

Kept only for importers written before the move (train/calibrate.py); import from
`fer_edge.evaluation.data` instead. Delete once nothing imports this name.
"""

from fer_edge.evaluation.data import *  # noqa: F403
from fer_edge.evaluation.data import cache_dir, input_path  # noqa: F401
