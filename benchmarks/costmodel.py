"""The Pi cost model, on paper: multiply-accumulates (MACs) and parameters counted from the model
graphs by code, and per-frame latency on a Raspberry Pi 4 and 5 ESTIMATED from published
reference timings, scaled by MACs. Nothing here is measured on a Pi: every estimate says so and
names its source, until someone runs `make bench` on a real one.

Counting rules (the usual ones): a convolution costs output elements x (input channels / groups)
x kernel height x kernel width; a depthwise one output elements x kernel area; a fully connected
layer inputs x outputs per row; everything else (activations, pooling, resizes, adds) is left
out, as it is in the published MAC figures we scale from. Parameters are the elements of the
graph's constant weight tensors.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

from fer_edge.edge.config import DEFAULTS
from fer_edge.edge.pipeline import PipelineConfig

# Published reference timings. Each: what was timed, the figure, where it was published.
REFERENCES = {
    "yunet_pi4": {
        "what": "YuNet (face_detection_yunet_2022mar.onnx) at 160x120, OpenCV DNN "
        "4.7.0, Raspberry Pi 4B (BCM2711B0, Cortex-A72 @ 1.5 GHz, 4 cores)",
        "ms": 5.43,
        "figure": "mean=5.43 ms, 'Rasberry Pi 4B (CPU)' section",
        "url": "https://github.com/opencv/opencv_zoo/blob/main/benchmark/README.md",
    },
    "yunet_pi4_check": {
        "what": "YuNet at 320x320, OpenCV, Raspberry Pi 4, 4 threads (cross-check only)",
        "ms": 35.0,
        "figure": "33.0-37.1 ms over three images, 'time_comparison_pi.md'",
        "url": "https://github.com/TonyCongqianWang/cv_facedetection_eval/blob/main/"
        "time_comparison_pi.md",
    },
    "mobilenet_pi4": {
        "what": "MobileNetV2 1.0 224 int8 (mobilenet_v2_1.0_224_quant.tflite), TensorFlow "
        "Lite C++, Raspberry Pi 4 at 1950 MHz, 64-bit OS",
        "ms": 1000.0 / 45.5,
        "macs": 300e6,
        "figure": "45.5 FPS ('Mobile_V2 Lite'); 300M MACs from the MobileNetV2 paper, "
        "Table 4 (arXiv:1801.04381)",
        "url": "https://github.com/Qengineering/TensorFlow_Lite_Classification_RPi_64-bits",
    },
    "pi5_over_pi4": {
        "what": "TensorFlow Lite MobileNet v2 on Raspberry Pi 4 vs Raspberry Pi 5",
        "ratio": 112.6 / 23.5,
        "figure": "112.6 ms (Pi 4) vs 23.5 ms (Pi 5), TensorFlow Lite rows of the table",
        "url": "https://github.com/aallan/benchmarking-ml-on-the-edge",
    },
}


def onnx_cost(path: str | Path, width: int, height: int) -> dict:
    """MACs and parameters of an ONNX model (YuNet) at one input size, from its graph."""
    try:
        import onnx
        from onnx import numpy_helper, shape_inference
    except ImportError:
        raise ImportError("the Pi cost model needs `onnx` (pip install onnx)") from None
    model = onnx.load(str(path))
    dims = model.graph.input[0].type.tensor_type.shape.dim
    for dim, value in zip(dims, (1, 3, height, width)):
        dim.ClearField("dim_param")
        dim.dim_value = value
    model = shape_inference.infer_shapes(model)
    shapes = {
        v.name: [d.dim_value for d in v.type.tensor_type.shape.dim]
        for v in (*model.graph.value_info, *model.graph.output, *model.graph.input)
    }
    weights = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    macs = 0
    for node in model.graph.node:
        if node.op_type == "Conv":
            w = weights[node.input[1]]  # (out, in / groups, kh, kw)
            out = shapes.get(node.output[0])
            if not out or not all(out):
                raise ValueError(f"{path}: no shape for {node.output[0]} at {width}x{height}")
            macs += math.prod(out) * math.prod(w.shape[1:])
        elif node.op_type in ("Gemm", "MatMul") and node.input[1] in weights:
            w = weights[node.input[1]]
            rows = math.prod(shapes.get(node.input[0], [1])[:-1]) or 1
            macs += rows * w.size
    params = int(sum(w.size for w in weights.values()))
    return {"input": f"{width}x{height}", "macs": int(macs), "params": params}


def tflite_cost(path: str | Path) -> dict:
    """MACs and parameters of a TFLite model, from its graph as the interpreter loads it.

    The interpreter reports the network's shapes for one view: a model with test-time views
    runs that network once per view (a batch of 6 for `multi`), so MACs are multiplied by the
    views its contract declares. Parameters are the weights and biases
    of the convolution and dense layers (BatchNorm is folded into them by the converter).
    """
    from fer_edge.edge.interpreter import load_interpreter_class

    cls, _, _ = load_interpreter_class()
    interp = cls(model_path=str(path))
    interp.allocate_tensors()
    shapes = {t["index"]: [int(v) for v in t["shape"]] for t in interp.get_tensor_details()}
    macs = params = 0
    batch_seen = 1
    for op in interp._get_ops_details():
        name, ins, out = op["op_name"], list(op["inputs"]), shapes[op["outputs"][0]]
        if name in ("CONV_2D", "DEPTHWISE_CONV_2D"):
            batch_seen = max(batch_seen, out[0])
        if name == "CONV_2D":
            macs += math.prod(out) * math.prod(shapes[ins[1]][1:])
        elif name == "DEPTHWISE_CONV_2D":
            macs += math.prod(out) * math.prod(shapes[ins[1]][1:3])
        elif name == "FULLY_CONNECTED":
            macs += math.prod(out[:-1]) * math.prod(shapes[ins[1]])
        else:
            continue
        params += sum(math.prod(shapes[i]) for i in ins[1:3] if i >= 0)
    # The converter keeps the batch of views in the static shapes only when the model's input
    # batch was fixed; otherwise it reports one view, and the contract says how many run.
    sidecar = Path(f"{path}.json")
    views = 1
    if sidecar.is_file():
        tta = json.loads(sidecar.read_text()).get("tta", "none")
        views = {"none": 1, "flip": 2, "multi": 6}.get(tta, 1)
    extra = views if batch_seen < views else 1
    return {"macs": int(macs) * extra, "params": int(params), "views": views}


def yunet_input(width: int, height: int) -> tuple[int, int]:
    """cv2.FaceDetectorYN pads its input up to a multiple of 32 on each side."""
    return (width - 1) // 32 * 32 + 32, (height - 1) // 32 * 32 + 32


def cost_model(
    yunet: str | Path,
    models: list[str | Path],
    frame: tuple[int, int] = (1280, 720),
    detect_width: int = DEFAULTS.detect_width,
    roi_size: int = PipelineConfig.roi_size,
    detect_every: int = DEFAULTS.detect_every,
    full_detect_every: int = DEFAULTS.full_detect_every,
    classify_every: int = DEFAULTS.classify_every,
) -> dict:
    """Per stage: MACs, parameters, and ESTIMATED Pi 4 / Pi 5 ms; per frame for the default."""
    ref_y, ref_m, pi5 = (
        REFERENCES["yunet_pi4"],
        REFERENCES["mobilenet_pi4"],
        REFERENCES["pi5_over_pi4"],
    )
    h = round(frame[1] * detect_width / frame[0])
    stages: dict = {}
    yunet_ref = onnx_cost(yunet, *yunet_input(160, 120))
    per_mac_y = ref_y["ms"] / yunet_ref["macs"]
    for name, (w, hh) in {
        f"yunet whole frame {detect_width}x{h}": (detect_width, h),
        f"yunet tracked square {roi_size}x{roi_size}": (roi_size, roi_size),
        "yunet 160x120 (the reference's size)": (160, 120),
        "yunet 320x320 (the cross-check's size)": (320, 320),
    }.items():
        c = onnx_cost(yunet, *yunet_input(w, hh))
        stages[name] = {**c, "pi4_ms": c["macs"] * per_mac_y, "source": "yunet_pi4"}
    per_mac_m = ref_m["ms"] / ref_m["macs"]
    for path in models:
        c = tflite_cost(path)
        stages[f"classifier {Path(path).name} (per face)"] = {
            **c,
            "pi4_ms": c["macs"] * per_mac_m,
            "source": "mobilenet_pi4",
        }
    for s in stages.values():
        s["pi4_ms"] = round(s["pi4_ms"], 2)
        s["pi5_ms"] = round(s["pi4_ms"] / pi5["ratio"], 2)
    stages["yunet 320x320 (the cross-check's size)"]["source"] = (
        "yunet_pi4; compare yunet_pi4_check (published: 33-37 ms)"
    )
    # One face, the default schedule: whole-frame passes every `full_detect_every` frames,
    # tracked squares on the other detection frames, one classification every N frames.
    full = next(iter(stages.values()))
    roi = list(stages.values())[1]
    det_frames = 1.0 / detect_every
    full_share = 1.0 / full_detect_every if full_detect_every else det_frames
    per_frame = {}
    for key, s in stages.items():
        if not key.startswith("classifier"):
            continue
        row = {}
        for pi in ("pi4_ms", "pi5_ms"):
            detect = full[pi] * full_share + roi[pi] * max(0.0, det_frames - full_share)
            row[pi] = round(detect + s[pi] / classify_every, 2)
        per_frame[key.removeprefix("classifier ").removesuffix(" (per face)")] = row
    return {
        "estimate": True,
        "note": "ESTIMATES from published timings scaled by MACs, not measured on a Pi",
        "frame": f"{frame[0]}x{frame[1]}",
        "schedule": {
            "detect_every": detect_every,
            "full_detect_every": full_detect_every,
            "classify_every": classify_every,
            "faces": 1,
        },
        "stages": stages,
        "per_frame_one_face": per_frame,
        "references": REFERENCES,
    }
