"""`fer-edge convert`: every variant converted, checked against Keras, then put in place."""

from __future__ import annotations

import json
import logging
import tempfile
import time
from pathlib import Path

import numpy as np
from fer_edge.convert.tflite import (
    ConvertConfig,
    contract_for,
    convert_variant,
    converter_versions,
    gate_problem,
    tflite_io_details,
)
from fer_edge.edge.classifier import Classifier
from fer_edge.edge.contract import read_contract, write_contract
from fer_edge.edge.errors import ConfigError, FerEdgeError
from fer_edge.edge.fileio import atomic_write_bytes, atomic_write_text, sha256_file
from fer_edge.evaluation.data import load_fer2013, stratified_subset
from fer_edge.train.model import load_keras

log = logging.getLogger(__name__)


class AgreementError(FerEdgeError):
    pass


def run_convert(cfg: ConvertConfig) -> dict:
    bad = [v for v in cfg.variants if v not in ("float32", "float16", "dynamic", "int8")]
    if bad:
        raise ConfigError(f"--variants {bad[0]!r}: choose from float32, float16, dynamic, int8")
    if cfg.io_type not in ("int8", "uint8"):
        raise ConfigError(f"--io-type {cfg.io_type!r}: choose int8 or uint8")
    model_path = Path(cfg.model)
    model = load_keras(model_path)
    base = read_contract(model_path)
    if cfg.tta:
        from fer_edge.train.model import TTA_VIEWS, inference_model, trained_net

        if cfg.tta not in TTA_VIEWS:
            raise ConfigError(f"--tta {cfg.tta!r}: choose from {', '.join(TTA_VIEWS)}")
        model = inference_model(trained_net(model), cfg.tta)
        base = base.with_(tta=cfg.tta)
    data = load_fer2013(cfg.data or None)
    x_tr, y_tr = data.select("train", base.labels, drop_test_duplicates=True)
    calib = x_tr[stratified_subset(y_tr, cfg.calibration, cfg.seed)]
    x_pub, y_pub = data.select("public", base.labels)
    check_idx = (
        stratified_subset(y_pub, cfg.check, cfg.seed) if cfg.check else np.arange(len(y_pub))
    )
    x_chk, y_chk = x_pub[check_idx], y_pub[check_idx]
    keras_top1 = model.predict(
        x_chk[..., None].astype(np.float32), batch_size=256, verbose=0
    ).argmax(1)
    keras_acc = float(np.mean(keras_top1 == y_chk))
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    provenance_base = {
        "source_model": model_path.name,
        "source_sha256": sha256_file(model_path),
        "data_sha256": data.sha256,
        "versions": converter_versions(),
    }
    if "calibrated" in base.provenance:  # folded into the weights: every variant carries it
        provenance_base["calibrated"] = base.provenance["calibrated"]
    summary: dict = {"model": str(model_path), "check_faces": int(len(x_chk)), "variants": {}}
    failures = []
    with tempfile.TemporaryDirectory(prefix="fer-convert-") as tmp:
        for variant in cfg.variants:
            t0 = time.time()
            blob = convert_variant(
                model, variant, calib if variant == "int8" else None, cfg.io_type
            )
            provenance = dict(provenance_base, variant=variant)
            if variant == "int8":
                provenance["calibration"] = {
                    "split": "train (test duplicates removed)",
                    "count": int(len(calib)),
                    "stratified": True,
                    "seed": cfg.seed,
                }
            staged = Path(tmp) / f"{cfg.prefix}_{variant}.tflite"
            staged.write_bytes(blob)
            contract = contract_for(tflite_io_details(blob), base, provenance)
            write_contract(staged, contract)
            clf = Classifier(staged)
            lite_top1 = np.array([clf.predict(x).argmax() for x in x_chk])
            agreement = float(np.mean(lite_top1 == keras_top1))
            drop = keras_acc - float(np.mean(lite_top1 == y_chk))
            provenance["agreement_with_keras"] = {
                "top1": round(agreement, 4),
                "accuracy_drop": round(drop, 4),
                "faces": int(len(x_chk)),
                "split": "public",
            }
            contract = contract.with_(provenance=provenance)
            entry = {
                "file": f"{cfg.prefix}_{variant}.tflite",
                "bytes": len(blob),
                "agreement": agreement,
                "accuracy_drop": drop,
                "seconds": round(time.time() - t0, 1),
                "input": [contract.input_dtype, contract.input_scale, contract.input_zero_point],
            }
            summary["variants"][variant] = entry
            problem = gate_problem(agreement, drop, cfg)
            if problem:
                failures.append(f"{variant}: {problem}; nothing written")
                log.error(failures[-1])
                continue
            final = out / entry["file"]
            # Contract first: a runtime that loads between the two renames sees a model that
            # disagrees with its contract and refuses it, rather than silently using it.
            write_contract(final, contract)
            atomic_write_bytes(final, blob)
            log.info(
                "%s: %s, %d bytes, agreement %.2f%%", variant, final, len(blob), 100 * agreement
            )
    atomic_write_text(
        out / f"{cfg.prefix}_convert.report.json", json.dumps(summary, indent=2) + "\n"
    )
    if failures:
        raise AgreementError("; ".join(failures))
    return summary
