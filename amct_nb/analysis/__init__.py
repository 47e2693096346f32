"""Measuring quantization: metrics, the safety net, sensitivity and fallback search, comparisons."""

from .compare import Comparer, Comparison, LayerError
from .metrics import channel_snr_db, cosine, db, error_sums, softmax, sqnr_db, topk_accuracy
from .ranking import (
    OUTPUT_MODES,
    SENSITIVITIES,
    CosineSimilarity,
    MseSensitivity,
    SensitivityBase,
    local_ranking,
    output_ranking,
)
from .safety import MIN_CHANNEL_SNR_DB, MIN_SQNR_DB, flag_tensors, output_errors, reference_outputs, tensor_errors
from .sensitivity import (
    MIN_OUTPUT_SQNR_DB,
    GatedSession,
    OutputCheck,
    fallback_search,
    first_samples,
    harm_of,
    output_check,
)

__all__ = [
    "Comparer", "Comparison", "LayerError",
    "OUTPUT_MODES", "SENSITIVITIES", "CosineSimilarity", "MseSensitivity", "SensitivityBase", "local_ranking",
    "output_ranking",
    "channel_snr_db", "cosine", "db", "error_sums", "softmax", "sqnr_db", "topk_accuracy",
    "MIN_CHANNEL_SNR_DB", "MIN_SQNR_DB", "flag_tensors", "output_errors", "reference_outputs", "tensor_errors",
    "MIN_OUTPUT_SQNR_DB", "GatedSession", "OutputCheck", "fallback_search", "first_samples", "harm_of", "output_check",
]
