"""Quantization-aware training (the ``torch`` extra): an ONNX model as a trainable torch module whose
forward pass is the deploy model's arithmetic, trained from the PTQ result and written back through
the same record -> plan -> export path as every other job.

    from amct_nb.qat import retrain
    res = retrain("model.onnx", "train_images/", eval_data="val_images/", output="outputs/qat",
                  per_tensor=True, epochs=1)            # or distill=True without labels
    res.result.report(); res.history                    # AMCT's files are in outputs/qat

Modules: :mod:`~amct_nb.qat.graph` (ONNX -> torch), :mod:`~amct_nb.qat.quantizers` (fake quantizers),
:mod:`~amct_nb.qat.model` (QatModel and its export), :mod:`~amct_nb.qat.train` (the loop, torchrun),
:mod:`~amct_nb.qat.cli` (``amct-nb retrain``).
"""

from .graph import SUPPORTED_OPS, TorchGraph
from .model import QatModel
from .quantizers import ActQuant, WeightQuant
from .train import RetrainResult, TrainingError, as_arrays, retrain

__all__ = ["retrain", "RetrainResult", "TrainingError", "QatModel", "TorchGraph", "SUPPORTED_OPS", "ActQuant",
           "WeightQuant", "as_arrays"]
