"""Convert a model quantized elsewhere (QDQ from PyTorch, TensorFlow, ONNX Runtime, NNCF) into a record.

    from amct_nb.convert import convert_qat
    result = convert_qat("qat.onnx")               # the QAT model's scales and integer weights, kept
    result.save("outputs/convert", prefix="model")  # AMCT's files; result.report()["conversion"]

Modules: :mod:`~amct_nb.convert.grids` (the numbers of one Q/DQ node), :mod:`~amct_nb.convert.reading`
(Q/DQ patterns -> float model, grids, integer constants), :mod:`~amct_nb.convert.decide` (the Record,
config and integer weights; recalibration), :mod:`~amct_nb.convert.result` (ConvertResult and its
measurements), :mod:`~amct_nb.convert.pipeline` (:func:`convert_qat`).
"""

from .decide import Decision, config_for, decide, recalibrated
from .grids import Grid, QatConst
from .pipeline import GUARDS, convert_qat
from .reading import Reading, read_qdq
from .result import ConvertResult, bias_requantization, output_agreement, saturation_risk

__all__ = ["convert_qat", "GUARDS", "ConvertResult", "read_qdq", "Reading", "Grid", "QatConst", "decide",
           "Decision", "config_for", "recalibrated", "saturation_risk", "bias_requantization", "output_agreement"]
