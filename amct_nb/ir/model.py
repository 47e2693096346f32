"""Load and validate ONNX models; sizes, models over 2 GB, IR versions."""

from __future__ import annotations

import os
from collections import defaultdict
from pathlib import Path

import onnx

from ..errors import ModelError
from .graph import walk_nodes

__all__ = [
    "load_model",
    "ModelLike",
    "validate",
    "byte_size",
    "is_large",
    "without_large_data",
    "KNOWN_DOMAINS",
    "LARGE_MODEL_BYTES",
    "model_opset",
    "fit_ir_version",
    "tensor_elem_types",
]

#: What a model argument may be: a path, the file's bytes, or a ModelProto.
ModelLike = str | os.PathLike | bytes | onnx.ModelProto

#: Operator domains that ONNX Runtime's CPU build runs without extra libraries.
KNOWN_DOMAINS = frozenset({"", "ai.onnx", "ai.onnx.ml", "com.microsoft", "ai.onnx.preview.training"})

#: Models at least this big cannot be one protobuf message (2 GB): they are checked, inferred,
#: run and saved without serializing their weights (external data). Tests lower it.
LARGE_MODEL_BYTES = 2**31


def model_opset(model: onnx.ModelProto) -> int:
    """The opset version of the default ONNX domain (0 when the model imports none)."""
    for op in model.opset_import:
        if op.domain in ("", "ai.onnx"):
            return int(op.version)
    return 0


def fit_ir_version(model: onnx.ModelProto) -> onnx.ModelProto:
    """Lower ``model.ir_version`` to the smallest one its opsets need, when it is higher.

    onnx >= 1.21 stamps IR versions that older ONNX Runtime builds refuse to load; the
    smallest IR version that covers the opsets is what every runtime accepts.
    """
    try:
        need = onnx.helper.find_min_ir_version_for(list(model.opset_import), ignore_unknown=True)
    except Exception:  # unknown domain versions: keep what the model says
        return model
    if model.ir_version > need:
        model.ir_version = max(need, 7)
    return model


def _describe_file(path: Path) -> str:
    with open(path, "rb") as f:
        head = f.read(16)
    if head.startswith(b"PK"):
        return " (it looks like a zip archive: extract the .onnx file first)"
    if head.startswith(b"\x89HDF") or head.startswith(b"\x80"):
        return " (it looks like a pickle/HDF5 file: export the model to ONNX first)"
    if head[:1] in (b"{", b"[") or head.startswith(b"<"):
        return " (it looks like a text file)"
    return ""


def load_model(model: ModelLike, *, check: bool = True) -> onnx.ModelProto:
    """Load an ONNX model from a path, bytes or a ModelProto and validate it.

    The model file is only read, never written. External data next to the file is loaded.
    Raises :class:`ModelError` with the problem and the fix for a missing, truncated,
    non-ONNX or invalid file, and for operators from custom domains ONNX Runtime cannot run.
    """
    if isinstance(model, onnx.ModelProto):
        proto = onnx.ModelProto()
        proto.CopyFrom(model)
        base = None
    elif isinstance(model, (bytes, bytearray)):
        proto = _parse(bytes(model), "<bytes>")
        base = None
    elif isinstance(model, (str, os.PathLike)):
        path = Path(model)
        if not path.exists():
            raise ModelError(f"model file not found: {path}: check the path (current folder: {os.getcwd()})")
        if path.is_dir():
            raise ModelError(f"{path} is a folder, not an ONNX file: pass the path of the .onnx file inside it")
        if path.stat().st_size == 0:
            raise ModelError(f"{path} is empty (0 bytes): re-export or re-copy the model")
        try:
            data = path.read_bytes()
        except OSError as e:
            raise ModelError(f"cannot read {path}: {e.strerror}: check the file's permissions") from e
        proto = _parse(data, str(path), hint=_describe_file(path))
        base = path.parent
    else:
        raise ModelError(
            f"expected a path, bytes or onnx.ModelProto, got {type(model).__name__}: "
            "pass the model file's path or onnx.load(path)"
        )
    if base is not None and _has_external_data(proto):
        try:
            onnx.external_data_helper.load_external_data_for_model(proto, str(base))
        except (OSError, ValueError) as e:
            raise ModelError(
                f"the model's external data cannot be read ({e}): keep the data files next to "
                f"the .onnx file, as saved, in {base}"
            ) from e
    if check:
        validate(proto)
    return proto


def _parse(data: bytes, where: str, hint: str = "") -> onnx.ModelProto:
    proto = onnx.ModelProto()
    try:
        proto.ParseFromString(data)
    except Exception as e:  # google.protobuf.message.DecodeError
        raise ModelError(
            f"{where} is not a readable ONNX file{hint}: the protobuf data does not parse ({e}); "
            "the file is truncated or in another format: re-export or re-download it"
        ) from e
    if not proto.HasField("graph") or (len(proto.graph.node) == 0 and len(proto.graph.output) == 0):
        raise ModelError(
            f"{where} holds no ONNX graph{hint}: the file is truncated or not an ONNX model: "
            "re-export or re-download it"
        )
    return proto


def _has_external_data(proto: onnx.ModelProto) -> bool:
    return any(
        t.data_location == onnx.TensorProto.EXTERNAL
        for t in onnx.external_data_helper._get_all_tensors(proto)
    )


def validate(proto: onnx.ModelProto) -> None:
    """Raise :class:`ModelError` if the model fails the ONNX checker or uses unknown domains."""
    custom = defaultdict(set)
    local_functions = {(f.domain, f.name) for f in proto.functions}
    for node in walk_nodes(proto.graph):
        if node.domain not in KNOWN_DOMAINS and (node.domain, node.op_type) not in local_functions:
            custom[node.domain].add(node.op_type)
    if custom:
        desc = "; ".join(f"'{d}': {', '.join(sorted(ops))}" for d, ops in sorted(custom.items()))
        raise ModelError(
            f"the model uses custom operators that ONNX Runtime cannot run without their library ({desc}): "
            "replace them with standard ONNX operators when exporting, or quantize the model "
            "in a runtime that has the library"
        )
    try:
        if not is_large(proto):
            onnx.checker.check_model(proto)
        else:
            onnx.checker.check_model(_without_data(proto))
    except (onnx.checker.ValidationError, ValueError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else repr(e)
        raise ModelError(
            f"the model fails the ONNX checker: {first}. Fix the exporter's output "
            "(onnx.checker.check_model shows the full report) and try again"
        ) from e


def byte_size(proto: onnx.ModelProto) -> int:
    """Serialized size of a model, also over 2 GB (where protobuf's ``ByteSize`` refuses)."""
    try:
        return proto.ByteSize()
    except Exception:  # EncodeError: the message is over protobuf's 2 GB limit
        # the sum of the parts (+ a few bytes of framing each), without copying the model
        g = proto.graph
        parts = [*g.initializer, *g.node, *g.input, *g.output, *g.value_info, *proto.functions, *proto.opset_import]
        return sum(x.ByteSize() + 8 for x in parts)


def is_large(proto: onnx.ModelProto) -> bool:
    """True when the model cannot be one protobuf message (>= 2 GB): save it with external data."""
    return byte_size(proto) >= LARGE_MODEL_BYTES


def _clear_data(t: onnx.TensorProto) -> None:
    for f in ("raw_data", "float_data", "int32_data", "int64_data", "double_data", "uint64_data", "string_data"):
        t.ClearField(f)


def _without_data(proto: onnx.ModelProto) -> onnx.ModelProto:
    """A light copy for structural checks (the checker without shape inference): every embedded
    initializer becomes an empty tensor of the same type and rank."""
    light = onnx.ModelProto()
    light.CopyFrom(proto)
    for t in light.graph.initializer:
        if t.data_location == onnx.TensorProto.EXTERNAL or not len(t.dims) or t.ByteSize() < (1 << 20):
            continue
        _clear_data(t)
        t.dims[0] = 0
    return light


def without_large_data(proto: onnx.ModelProto, threshold: int = 1 << 20) -> onnx.ModelProto:
    """A copy whose initializers over ``threshold`` bytes keep their type and dims but point to
    external data that is never read: for shape inference of models over 2 GB."""
    light = onnx.ModelProto()
    light.CopyFrom(proto)
    for t in light.graph.initializer:
        if t.data_location == onnx.TensorProto.EXTERNAL or t.ByteSize() < threshold:
            continue
        _clear_data(t)
        t.data_location = onnx.TensorProto.EXTERNAL
        del t.external_data[:]
        e = t.external_data.add()
        e.key, e.value = "location", "amct-nb-not-loaded.data"
    return light


def tensor_elem_types(model: onnx.ModelProto) -> dict[str, int]:
    """Element type of every typed value in the main graph (inputs, outputs, value_info, weights)."""
    g = model.graph
    types = {}
    for vi in list(g.input) + list(g.output) + list(g.value_info):
        if vi.type.HasField("tensor_type"):
            types[vi.name] = vi.type.tensor_type.elem_type
    for init in g.initializer:
        types[init.name] = init.data_type
    return types
