"""The ONNX layer: load and validate models, index and edit graphs, run sessions, write files safely.

Nothing here knows about quantization; every other room builds on it.
"""

from .edit import GraphEdit, clone, keep_only, set_metadata
from .external import Spill
from .files import (
    atomic_write_bytes,
    atomic_write_text,
    check_output_dir,
    os_error,
    output_lock,
    save_model_file,
)
from .graph import (
    GraphIndex,
    InputSpec,
    attr,
    input_specs,
    is_default_domain,
    named_subgraphs,
    node_scopes,
    outer_names,
    subgraphs,
    walk_graphs,
    walk_nodes,
)
from .model import (
    LARGE_MODEL_BYTES,
    ModelLike,
    byte_size,
    fit_ir_version,
    is_large,
    is_not_loaded,
    light_copy,
    load_model,
    model_opset,
    tensor_elem_types,
    validate,
    without_large_data,
)
from .runtime import ObservingSession, float_tensors, lean_options, make_session, with_outputs

__all__ = [
    "GraphEdit", "clone", "keep_only", "set_metadata",
    "Spill", "atomic_write_bytes", "atomic_write_text", "check_output_dir", "os_error", "output_lock",
    "save_model_file",
    "GraphIndex", "InputSpec", "attr", "input_specs", "is_default_domain", "named_subgraphs", "node_scopes",
    "outer_names", "subgraphs", "walk_graphs", "walk_nodes",
    "LARGE_MODEL_BYTES", "ModelLike", "byte_size", "fit_ir_version", "is_large", "is_not_loaded", "light_copy",
    "load_model", "model_opset", "tensor_elem_types", "validate", "without_large_data",
    "float_tensors", "lean_options", "make_session", "with_outputs", "ObservingSession",
]
