"""Evaluation: how good a model is, measured the same way everywhere.

`fer-edge eval`, `fer-edge card` and the capture-robustness suite live here, with what they
read (FER2013, the FER+ crowd votes) and what they compute (accuracy, macro-F1, per-class
recall, calibration). The layer sits between the runtime and everything else: it imports only
`edge/` (and numpy, OpenCV), so a device with just the `edge` extra evaluates a `.tflite`
model; `train/` and `benchmarks/` import it, never the other way round. TensorFlow is loaded
only to run a Keras model, and its absence is one line naming the `train` extra.
"""
