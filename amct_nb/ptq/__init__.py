"""Post-training calibration: prepare, observe, scales (the record), plan, build, result, rebuild."""

from .fast_rebuild import rebuild, reusable_record
from .nuq import NUQ_OPS, mapping_file_layers, nuq_layers, nuq_refusal, uses_nuq, with_nuq
from .observation import DEFAULT_BATCH_BYTES, Observation, collect_stats, observe
from .pipeline import Decision, build, calibrate_record, quantize, record_decision, write_models
from .plan import plan_from_record, range_spec
from .points import input_channels, quant_points, select_layers
from .prepared import Prepared, prepare, prepare_passes
from .result import OUTPUT_FILES, QuantResult, fusion_info_of, modified_model_for, unsupported_ops
from .scales import needs_channel_moments, record_from_stats
from .weights import layer_weight

__all__ = [
    "Decision", "build", "calibrate_record", "quantize", "record_decision", "write_models",
    "DEFAULT_BATCH_BYTES", "Observation", "collect_stats", "observe",
    "plan_from_record", "range_spec", "input_channels", "quant_points", "select_layers",
    "Prepared", "prepare", "prepare_passes", "rebuild", "reusable_record",
    "OUTPUT_FILES", "QuantResult", "fusion_info_of", "modified_model_for", "unsupported_ops",
    "record_from_stats", "layer_weight", "NUQ_OPS", "mapping_file_layers", "nuq_layers", "nuq_refusal", "with_nuq",
    "uses_nuq", "needs_channel_moments",
]
