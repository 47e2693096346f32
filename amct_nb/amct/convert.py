"""AMCT's ``convert_qat_model``: a QAT (fake-quant) or QDQ ONNX model to AMCT's outputs, no data needed.

    import amct_nb.amct as amct                     # was: import amct_onnx as amct
    amct.convert_qat_model("qat.onnx", "outputs/model", record_file="outputs/record.txt")
    # outputs/model_fake_quant_model.onnx, outputs/model_deploy_model.onnx, outputs/model_quant.json

The work is :func:`amct_nb.convert.convert_qat` (the QAT scales and integer weights are kept);
this module only writes AMCT's files. Everything is checked before the first file is written.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from ..convert import convert_qat
from ..errors import OutputError
from ..ir import atomic_write_text, save_model_file
from ..ptq import fusion_info_of

__all__ = ["convert_qat_model"]


def convert_qat_model(model_file, save_path, record_file=None) -> dict:
    """Write ``<save_path>_fake_quant_model.onnx``, ``<save_path>_deploy_model.onnx`` and
    ``<save_path>_quant.json`` (and the record with the model's scales to ``record_file``) from a
    QAT/QDQ model; returns the paths written. ``save_path`` is a prefix ``dir/name``, as in AMCT."""
    prefix = Path(save_path)
    if not prefix.name:
        raise OutputError(f"save_path '{save_path}' names a folder: AMCT's save_path is a prefix such as "
                          "'outputs/model' (files become outputs/model_deploy_model.onnx...)")
    paths = {
        "fake_quant": Path(f"{prefix}_fake_quant_model.onnx"),
        "deploy": Path(f"{prefix}_deploy_model.onnx"),
        "quant_json": Path(f"{prefix}_quant.json"),
    }
    if record_file:
        paths["record"] = Path(record_file)
    if isinstance(model_file, (str, os.PathLike)):
        src = Path(model_file).resolve()
        clash = [str(p) for p in paths.values() if p.resolve() == src]
        if clash:
            raise OutputError(f"{clash[0]} is the input model: amct-nb never overwrites the model it reads: choose "
                              "another save_path or record_file")
    result = convert_qat(model_file, progress=False)
    save_model_file(result.fake_quant_model, paths["fake_quant"])
    save_model_file(result.deploy_model, paths["deploy"])
    atomic_write_text(paths["quant_json"], json.dumps(fusion_info_of(result.prepared), indent=2) + "\n")
    if record_file:
        atomic_write_text(paths["record"], result.record.to_text())
    return paths
