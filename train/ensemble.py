"""`fer-edge ensemble`: several trained models as one graph, one interpreter run per face.

The members' logits (the input of each `probs` layer, before its softmax) are averaged with
equal weights, then a K x K `probs` layer (identity: softmax of the mean logits, i.e. the
normalised geometric mean of the members' probabilities) gives the output. The mean of
log-probabilities and the mean of logits differ by a per-face constant, which softmax removes,
so the graph keeps the logits: a narrower range for int8 than log-probabilities.

The members must share the contract (labels, input size, colour, resizing): the runtime feeds
the ensemble exactly what it fed each member. `fer-edge calibrate` can fold a temperature and
bias into the final `probs` layer like any model's, when a holdout exists that no member saw.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

log = logging.getLogger(__name__)

# Contract fields that may differ between members: where each came from (with the calibration
# folded into its weights), and its test-time views, which the ensemble leaves out (each member
# enters as its trained net; `convert --tta` puts views around the whole ensemble).
FREE_FIELDS = ("provenance", "tta")
# Training-config keys that decide a stage-1 run's holdout (train/calibrate.py rebuilds it from
# them): members that agree on all of them, and trained on the same FER2013 bytes (the contract's
# data_sha256) with the same FER+ votes file, held out the same faces, which none of them saw.
HOLDOUT_KEYS = (
    "labels", "fer2013_votes", "drop_test_duplicates", "validation", "holdout", "seed",
)  # fmt: skip


def member_logits(model, index: int):
    """(body, head, weights) of one member: its graph up to the `probs` layer's input, a linear
    Dense of the same size, and `probs`' weights for it (set once the head is built)."""
    import keras
    from fer_edge.train.model import trained_net

    net = trained_net(model)
    probs = net.get_layer("probs")
    body = keras.Model(net.inputs, probs.input, name=f"member{index}")
    head = keras.layers.Dense(probs.units, name=f"member{index}_logits")
    return body, head, probs.get_weights()


def ensemble_model(members: list):
    """One graph: the members' logits, averaged, then an identity `probs` layer with softmax
    (where `fer-edge calibrate` folds a temperature and bias, as in any model)."""
    import keras
    import numpy as np

    inp = keras.Input(members[0].input_shape[1:], name="face")
    logits = []
    for i, m in enumerate(members):
        body, head, weights = member_logits(m, i)
        logits.append(head(body(inp)))
        head.set_weights(weights)
    k = logits[0].shape[-1]
    mean = keras.layers.Average(name="mean_logits")(logits)
    out = keras.layers.Dense(k, activation="softmax", name="probs")(mean)
    model = keras.Model(inp, out, name="fer_ensemble")
    model.get_layer("probs").set_weights([np.eye(k, dtype=np.float32), np.zeros(k, np.float32)])
    return model


def run_ensemble(member_paths: list[str], out: str) -> dict:
    from fer_edge.edge.contract import read_contract, write_contract
    from fer_edge.edge.errors import ConfigError
    from fer_edge.edge.fileio import atomic_write_text
    from fer_edge.train.model import load_keras
    from fer_edge.train.stage1 import save_model_atomic

    if len(member_paths) < 2:
        raise ConfigError("--members: name two or more trained models, comma-separated")
    for p in member_paths:
        if not Path(p).is_file():
            raise ConfigError(f"--members: {p} does not exist")
    contracts = [read_contract(p) for p in member_paths]
    first = contracts[0]
    for path, c in zip(member_paths[1:], contracts[1:]):
        differ = [
            f
            for f in first.__dataclass_fields__
            if f not in FREE_FIELDS and getattr(c, f) != getattr(first, f)
        ]
        if differ:
            raise ConfigError(
                f"--members: {path} differs from {member_paths[0]} in {', '.join(differ)}; "
                "an ensemble's members must take the same input and give the same labels"
            )
    members = [load_keras(p) for p in member_paths]
    model = ensemble_model(members)
    provenance: dict = {"ensemble": [Path(p).name for p in member_paths], "rule": "mean logits"}
    calibrated = {
        Path(p).name: c.provenance["calibrated"]
        for p, c in zip(member_paths, contracts)
        if "calibrated" in c.provenance
    }
    if calibrated:  # folded into each member's weights, so every converted variant names it
        provenance["calibrated"] = {
            "members": calibrated,
            "ensemble": "none fitted: each member's own calibration stands",
        }
    contract = first.with_(tta="none", provenance=provenance)
    stem = Path(out)
    stem.parent.mkdir(parents=True, exist_ok=True)
    for suffix in (".keras", ".h5"):
        save_model_atomic(model, stem.with_suffix(suffix))
        write_contract(stem.with_suffix(suffix), contract)
    holdout = shared_holdout(member_paths, contracts)
    config = stem.with_suffix(".config.json")
    if holdout:  # `fer-edge calibrate` reads it: a temperature and bias for the whole ensemble
        atomic_write_text(config, json.dumps({**holdout, "members": member_paths}, indent=2) + "\n")
    elif config.exists():
        config.unlink()  # an earlier ensemble's: it would name a holdout these members do not share
    report = ensemble_report(member_paths, int(model.count_params()))
    report["shared_holdout"] = bool(holdout)
    atomic_write_text(stem.with_suffix(".report.json"), json.dumps(report, indent=2) + "\n")
    return report


def shared_holdout(member_paths: list[str], contracts: list) -> dict:
    """The holdout-defining part of the members' training configs when every member has one
    and all agree (the same faces held out of every member); else {}. The data and votes may
    be named differently ("" for the default, a relative or absolute path): what must match is
    the archive's sha256 (from each member's contract) and the votes file's location."""
    from fer_edge.evaluation.data import default_path
    from fer_edge.evaluation.ferplus import SHARED_VOTES

    keys = []
    for p, contract in zip(member_paths, contracts):
        path = Path(p).with_suffix(".config.json")
        if not path.is_file():
            return {}
        cfg = json.loads(path.read_text())
        votes = cfg.get("ferplus") or default_path(("FERPLUS",), SHARED_VOTES)
        keys.append({
            **{k: cfg.get(k) for k in HOLDOUT_KEYS},
            "data_sha256": contract.provenance.get("data_sha256"),
            "ferplus": str(Path(votes).resolve()) if votes else "",
            "data": cfg.get("data", ""),
        })  # fmt: skip
    same = [{k: v for k, v in c.items() if k != "data"} for c in keys]
    if keys[0]["validation"] != "holdout" or not keys[0]["data_sha256"]:
        return {}
    if any(c != same[0] for c in same[1:]):
        return {}
    return keys[0]


def ensemble_report(member_paths: list[str], params: int) -> dict:
    """What the cards read of a training report (parameters, wall time, labels), for the
    ensemble: its members' own reports summed, where each has one beside it."""
    reports = []
    for p in member_paths:
        path = Path(p).with_suffix(".report.json")
        reports.append(json.loads(path.read_text()) if path.is_file() else {})
    walls = [r.get("total_wall_seconds", r.get("wall_seconds")) for r in reports]
    return {
        "stage": "ensemble",  # not a training run: the tables of runs skip it
        "members": member_paths,
        "rule": "equal-weight mean of the members' logits, softmax",
        "params": params,
        "total_wall_seconds": sum(walls) if all(walls) else None,
        "labels_rule": " + ".join(r.get("labels_rule", "?") for r in reports),
    }


def add_ensemble_parser(sub) -> None:
    p = sub.add_parser(
        "ensemble", help="several trained models as one graph (mean logits), for convert"
    )
    p.add_argument(
        "--members", required=True, help="trained Keras models, comma-separated (same contract)"
    )
    p.add_argument("--out", required=True, help="output stem, e.g. models/fer_pair")
    p.set_defaults(func=cmd_ensemble)


def cmd_ensemble(args) -> int:
    report = run_ensemble([m for m in args.members.split(",") if m], args.out)
    print(
        f"{len(report['members'])} members, {report['params']:,} parameters -> "
        f"{args.out}.keras, {args.out}.h5"
    )
    print(f"next: fer-edge convert --model {args.out}.h5 (then fer-edge eval on the .tflite)")
    return 0
