"""Calibration after stage 1: a temperature and a per-class logit bias, fitted on the training
holdout only, folded into the classifier layer.

Why both rulers: FER2013's single annotator and the FER+ crowd disagree (the crowd calls half of
FER2013's "sad" faces neutral). The holdout faces carry both labels, so the bias is chosen to
maximise the mean of the two macro-F1 scores, and the temperature to minimise the mean of the two
negative log-likelihoods. Neither test half is read.

Folding: the classifier is softmax(W x + c). softmax((W x + c) / T + b) is the same layer with
W / T and c / T + b, so the shipped graph (Keras, every TFLite variant, the int8 runtime, MQTT
and the dashboard) reports the calibrated probabilities with no extra step anywhere.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)

BIAS_GRID = np.round(np.arange(-1.5, 1.5001, 0.05), 2)
TEMPERATURE_GRID = np.round(np.arange(0.5, 3.0001, 0.01), 2)


def ece(probs: np.ndarray, y: np.ndarray) -> float:
    """Expected calibration error, 15 equal-width bins (evaluation.metrics: the cards' rule)."""
    from fer_edge.evaluation.metrics import calibration

    return calibration(probs, y)["ece"]


def adjusted(logp: np.ndarray, temperature: float, bias: np.ndarray) -> np.ndarray:
    z = logp / temperature + bias
    z = z - z.max(1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(1, keepdims=True)


def macro_f1(y: np.ndarray, pred: np.ndarray, k: int) -> float:
    f1 = []
    for c in range(k):
        tp = np.sum((pred == c) & (y == c))
        denom = np.sum(pred == c) + np.sum(y == c)
        f1.append(2 * tp / denom if denom else 0.0)
    return float(np.mean(f1))


def _nll(probs: np.ndarray, y: np.ndarray) -> float:
    return float(-np.mean(np.log(np.clip(probs[np.arange(len(y)), y], 1e-12, 1.0))))


def fit(logp: np.ndarray, rulers: list[np.ndarray]) -> tuple[float, np.ndarray]:
    """(temperature, bias) for log-probabilities (N, K); a ruler is labels (N,), -1 = none.

    The bias is searched class by class on BIAS_GRID (class 0 fixed at 0: only differences
    matter), three passes; the temperature on TEMPERATURE_GRID, before and after the bias.
    """
    k = logp.shape[1]
    masks = [r >= 0 for r in rulers]

    def mean_nll(t: float, b: np.ndarray, base: np.ndarray = logp) -> float:
        p = adjusted(base, t, b)
        return float(np.mean([_nll(p[m], r[m]) for r, m in zip(rulers, masks)]))

    def score(b: np.ndarray, t: float) -> float:
        pred = (logp / t + b).argmax(1)
        return float(np.mean([macro_f1(r[m], pred[m], k) for r, m in zip(rulers, masks)]))

    bias = np.zeros(k)
    t = min(TEMPERATURE_GRID, key=lambda tt: mean_nll(tt, bias))
    for _ in range(3):
        for c in range(1, k):
            trial = bias.copy()
            best, best_v = score(bias, t), bias[c]
            for v in BIAS_GRID:
                trial[c] = v
                s = score(trial, t)
                # ties go to the smaller correction
                if s > best + 1e-12 or (abs(s - best) <= 1e-12 and abs(v) < abs(best_v)):
                    best, best_v = s, v
            bias[c] = best_v
    # The bias moved the confidences: one more temperature on the biased logits (argmax kept),
    # i.e. softmax((logp / t + bias) / t2) = softmax(logp / (t * t2) + bias / t2).
    z = logp / t + bias
    t2 = min(TEMPERATURE_GRID, key=lambda tt: mean_nll(tt, np.zeros(k), z))
    return float(t * t2), bias / t2


def fold(net, temperature: float, bias: np.ndarray) -> None:
    """softmax((W x + c) / T + b) folded into the `probs` Dense layer in place."""
    layer = net.get_layer("probs")
    kernel, c = layer.get_weights()
    layer.set_weights([kernel / temperature, c / temperature + bias.astype(c.dtype)])


def holdout_faces(cfg, data, votes, labels: tuple[str, ...]):
    """The stage-1 run's holdout faces (images, FER2013 ruler, FER+ majority ruler), rebuilt
    from its config exactly as training split them."""
    from fer_edge.edge.contract import FER2013_CLASSES
    from fer_edge.evaluation.ferplus import majority, split_targets
    from fer_edge.train.stage1 import holdout_mask

    _, t_tr, idx = split_targets(
        data, "train", labels, cfg["labels"], votes,
        drop_test_duplicates=cfg["drop_test_duplicates"],
        fer2013_votes=cfg.get("fer2013_votes", 0.0),
    )  # fmt: skip
    hold = holdout_mask(t_tr, cfg["holdout"], cfg["seed"])
    idx = idx[hold]
    remap = np.array([labels.index(c) if c in labels else -1 for c in FER2013_CLASSES])
    y_fer = remap[data.labels[idx].astype(np.int64)]
    v, _ = votes.for_names(data.names[idx])
    y_plus = majority(v, labels)
    return data.images[idx], y_fer, y_plus


def run_calibrate(model_path: str, out: str, single_view: bool = False) -> dict:
    from fer_edge.edge.contract import read_contract, write_contract
    from fer_edge.edge.errors import ConfigError
    from fer_edge.edge.fileio import atomic_write_text
    from fer_edge.evaluation.data import load_fer2013
    from fer_edge.evaluation.ferplus import load_votes
    from fer_edge.train.model import inference_model, load_keras, trained_net
    from fer_edge.train.stage1 import predict_probs, save_model_atomic

    src = Path(model_path)
    cfg_path = src.with_suffix(".config.json")
    contract = read_contract(src)
    if not cfg_path.is_file() and "ensemble" in contract.provenance:
        raise ConfigError(
            f"{src}: its members were not trained with the same holdout (no face unseen by all); "
            "nothing to calibrate on"
        )
    if not cfg_path.is_file():
        raise ConfigError(f"{cfg_path}: the training config beside --model is needed (holdout)")
    cfg = json.loads(cfg_path.read_text())
    if cfg.get("validation") != "holdout":
        raise ConfigError(f"{src}: was not trained with a holdout; nothing to calibrate on")
    if contract.tta != "none" and not single_view:
        # a temperature folded into the net rescales each view, not their average
        raise ConfigError(
            f"{src}: averages test-time views (tta {contract.tta}); a calibration folds into one "
            "view: add --single-view to calibrate and write its single-view net"
        )
    labels = tuple(contract.labels)
    data = load_fer2013(cfg.get("data") or None)
    votes = load_votes(cfg.get("ferplus") or None)
    x, y_fer, y_plus = holdout_faces(cfg, data, votes, labels)
    model = load_keras(src)
    if contract.tta != "none":  # --single-view: the trained net alone, as the runtime runs it
        model = inference_model(trained_net(model), "none")
        contract = contract.with_(tta="none")
    probs = predict_probs(model, x)
    logp = np.log(np.clip(probs, 1e-7, 1.0))
    temperature, bias = fit(logp, [y_fer, y_plus])
    after = adjusted(logp, temperature, bias)

    def summary(p):
        pred = p.argmax(1)
        return {
            name: {
                "accuracy": round(float(np.mean(pred[r >= 0] == r[r >= 0])), 4),
                "macro_f1": round(macro_f1(r[r >= 0], pred[r >= 0], len(labels)), 4),
                "ece": round(ece(p[r >= 0], r[r >= 0]), 4),
                "n": int(np.sum(r >= 0)),
            }
            for name, r in (("fer2013", y_fer), ("ferplus_majority", y_plus))
        }

    fold(trained_net(model), temperature, bias)
    check = predict_probs(model, x[:256])
    if not np.allclose(check, after[:256], atol=2e-3):
        raise RuntimeError("folded model disagrees with the fitted calibration")  # a bug, not input
    calibration = {
        "temperature": temperature,
        "logit_bias": [round(float(b), 3) for b in bias],
        "fitted_on": f"train holdout of {src.name} ({len(x)} faces), both rulers",
        "folded_into": "probs layer",
    }
    stem = Path(out)
    stem.parent.mkdir(parents=True, exist_ok=True)
    on_record = calibration
    before = contract.provenance.get("calibrated", {})
    if "members" in before:  # an ensemble: each member's own calibration stays on record
        on_record = {"members": before["members"], "ensemble": calibration}
    contract = contract.with_(provenance={**contract.provenance, "calibrated": on_record})
    for suffix in (".keras", ".h5"):
        save_model_atomic(model, stem.with_suffix(suffix))
        write_contract(stem.with_suffix(suffix), contract)
    report = {
        "source": str(src),
        "calibration": calibration,
        "holdout_before": summary(probs),
        "holdout_after": summary(after),
    }
    atomic_write_text(stem.with_suffix(".calibration.json"), json.dumps(report, indent=2) + "\n")
    # the training config travels with the model: its holdout is the source's (an ensemble of
    # calibrated members finds their shared holdout there), its views now the output's
    atomic_write_text(
        stem.with_suffix(".config.json"), json.dumps({**cfg, "tta": contract.tta}, indent=2) + "\n"
    )
    return report


def add_calibrate_parser(sub) -> None:
    p = sub.add_parser(
        "calibrate",
        help="fit a temperature and per-class bias on the training holdout, fold them in",
    )
    p.add_argument("--model", required=True, help="stage-1 Keras model (its .config.json beside)")
    p.add_argument("--out", required=True, help="output stem, e.g. models/fer_student")
    p.add_argument(
        "--single-view",
        action="store_true",
        help="for a model with test-time views: calibrate and write its trained net alone",
    )
    p.set_defaults(func=cmd_calibrate)


def cmd_calibrate(args) -> int:
    report = run_calibrate(args.model, args.out, args.single_view)
    cal = report["calibration"]
    print(f"temperature {cal['temperature']:.2f}, logit bias {cal['logit_bias']}")
    for when in ("holdout_before", "holdout_after"):
        for ruler, m in report[when].items():
            print(
                f"{when:>14} {ruler:>16}: accuracy {m['accuracy']:.4f}  "
                f"macro-F1 {m['macro_f1']:.4f}  ECE {m['ece']:.4f}  (n={m['n']})"
            )
    print(f"wrote {args.out}.keras, {args.out}.h5 and {args.out}.calibration.json")
    return 0
