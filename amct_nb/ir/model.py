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
    "light_copy",
    "copy_fields",
    "raw_nbytes",
    "tensor_bytes",
    "NOT_LOADED",
    "is_not_loaded",
    "fitted_ir_version",
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


def fitted_ir_version(model: onnx.ModelProto) -> int:
    """The IR version :func:`fit_ir_version` gives ``model`` (its own when nothing needs lowering)."""
    try:
        need = onnx.helper.find_min_ir_version_for(list(model.opset_import), ignore_unknown=True)
    except Exception:  # unknown domain versions: keep what the model says
        return model.ir_version
    return max(need, 7) if model.ir_version > need else model.ir_version


def fit_ir_version(model: onnx.ModelProto) -> onnx.ModelProto:
    """Lower ``model.ir_version`` to the smallest one its opsets need, when it is higher.

    onnx >= 1.21 stamps IR versions that older ONNX Runtime builds refuse to load; the
    smallest IR version that covers the opsets is what every runtime accepts.
    """
    v = fitted_ir_version(model)
    if v != model.ir_version:
        model.ir_version = v
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
    """Serialized size of a model, also over 2 GB, computed part by part without serializing its big weights
    (protobuf's ``ByteSize`` serializes the whole message, a transient copy of it, and refuses over 2 GB)."""
    g = proto.graph
    if _has_unknown(proto, g):  # fields copy_fields would not see: protobuf's own count
        try:
            return proto.ByteSize()
        except Exception:  # EncodeError: the message is over protobuf's 2 GB limit
            parts = [*g.initializer, *g.node, *g.input, *g.output, *g.value_info, *proto.functions,
                     *proto.opset_import]
            return sum(x.ByteSize() + 8 for x in parts)
    rest = onnx.GraphProto()
    copy_fields(g, rest, skip=("initializer",))
    graph = rest.ByteSize() + sum(_field(tensor_bytes(t)) for t in g.initializer)
    top = onnx.ModelProto()
    copy_fields(proto, top, skip=("graph",))
    return top.ByteSize() + (_field(graph) if proto.HasField("graph") else 0)


def _field(n: int) -> int:
    """Bytes of a length-delimited field of ``n`` bytes with a one-byte tag."""
    return 1 + max(1, (n.bit_length() + 6) // 7) + n


#: Bytes per element of the types whose raw data is one fixed-size value per element.
_ITEM_BYTES = {onnx.TensorProto.FLOAT: 4, onnx.TensorProto.UINT8: 1, onnx.TensorProto.INT8: 1,
               onnx.TensorProto.UINT16: 2, onnx.TensorProto.INT16: 2, onnx.TensorProto.INT32: 4,
               onnx.TensorProto.INT64: 8, onnx.TensorProto.BOOL: 1, onnx.TensorProto.FLOAT16: 2,
               onnx.TensorProto.DOUBLE: 8, onnx.TensorProto.UINT32: 4, onnx.TensorProto.UINT64: 8,
               onnx.TensorProto.COMPLEX64: 8, onnx.TensorProto.COMPLEX128: 16, onnx.TensorProto.BFLOAT16: 2}

_BIG = 1 << 16  # raw data from this size on is counted from the tensor's type and dims, not read


def raw_nbytes(t: onnx.TensorProto) -> int | None:
    """``len(t.raw_data)`` (None without raw data), for a big tensor from its type and dims (which the ONNX
    checker holds the data to): reading ``raw_data`` copies it."""
    if not t.HasField("raw_data"):
        return None
    n = _ITEM_BYTES.get(t.data_type)
    if n is not None:
        for d in t.dims:
            n *= d
        if n >= _BIG:
            return n
    return len(t.raw_data)


def tensor_bytes(t: onnx.TensorProto) -> int:
    """Serialized size of a tensor, without serializing its raw data when it is big (see :func:`raw_nbytes`)."""
    n = raw_nbytes(t)
    if n is None or n < _BIG:
        return t.ByteSize()
    rest = onnx.TensorProto()
    copy_fields(t, rest, skip=("raw_data",))
    return rest.ByteSize() + _field(n)


def is_large(proto: onnx.ModelProto) -> bool:
    """True when the model cannot be one protobuf message (>= 2 GB): save it with external data."""
    return byte_size(proto) >= LARGE_MODEL_BYTES


_DATA_FIELDS = ("raw_data", "float_data", "int32_data", "int64_data", "double_data", "uint64_data", "string_data")

#: ``external_data`` location of the weights a light copy leaves out (never a real file: reading one fails).
NOT_LOADED = "amct-nb-not-loaded.data"


def _clear_data(t: onnx.TensorProto) -> None:
    for f in _DATA_FIELDS:
        t.ClearField(f)


def copy_fields(src, dst, skip=()) -> None:
    """Copy the set fields of protobuf message ``src`` into ``dst`` one by one, except those named in ``skip``
    (which are not copied at all: no copy of a model's weights just to clear them afterwards)."""
    for fd, value in src.ListFields():
        if fd.name in skip:
            continue
        if fd.is_repeated:
            getattr(dst, fd.name).extend(value)
        elif fd.type == fd.TYPE_MESSAGE:
            getattr(dst, fd.name).CopyFrom(value)
        else:
            setattr(dst, fd.name, value)


def _has_unknown(*msgs) -> bool:
    from google.protobuf import unknown_fields

    return any(len(unknown_fields.UnknownFieldSet(m)) for m in msgs)


def light_copy(proto: onnx.ModelProto, strip, *, external: bool = True) -> onnx.ModelProto:
    """A copy of ``proto`` whose main-graph initializers for which ``strip(tensor)`` holds keep their name,
    type and dims but no data (with ``external``: marked as external data at :data:`NOT_LOADED`).

    Built field by field: the stripped weights are never copied, so the copy costs memory for what it keeps
    only (protobuf frees nothing of a message before the whole message goes, so copying a model and
    clearing its weights would keep them all). Fields this onnx does not know are kept by a full copy."""
    light = onnx.ModelProto()
    g = proto.graph
    cut = [strip(t) for t in g.initializer]
    if _has_unknown(proto, g, *[t for t, c in zip(g.initializer, cut) if c]):
        light.CopyFrom(proto)
        for t, c in zip(light.graph.initializer, cut):
            if c:
                _strip(t, external)
        return light
    copy_fields(proto, light, skip=("graph",))
    copy_fields(g, light.graph, skip=("initializer",))
    for t, c in zip(g.initializer, cut):
        new = light.graph.initializer.add()
        if c:
            copy_fields(t, new, skip=_DATA_FIELDS + (("external_data", "data_location") if external else ()))
            _strip(new, external)
        else:
            new.CopyFrom(t)
    return light


def _strip(t: onnx.TensorProto, external: bool) -> None:
    _clear_data(t)
    if external:
        t.data_location = onnx.TensorProto.EXTERNAL
        del t.external_data[:]
        e = t.external_data.add()
        e.key, e.value = "location", NOT_LOADED


def is_not_loaded(t: onnx.TensorProto) -> bool:
    """Whether ``t`` is a weight a light copy left out (see :func:`light_copy`)."""
    return (t.data_location == onnx.TensorProto.EXTERNAL
            and any(e.key == "location" and e.value == NOT_LOADED for e in t.external_data))


def _without_data(proto: onnx.ModelProto) -> onnx.ModelProto:
    """A light copy for structural checks (the checker without shape inference): every embedded
    initializer of 1 MB or more becomes an empty tensor of the same type and rank."""
    def big(t):
        return t.data_location != onnx.TensorProto.EXTERNAL and len(t.dims) > 0 and tensor_bytes(t) >= (1 << 20)

    cut = [big(t) for t in proto.graph.initializer]
    light = light_copy(proto, big, external=False)
    for t, c in zip(light.graph.initializer, cut):
        if c:
            t.dims[0] = 0
    return light


def without_large_data(proto: onnx.ModelProto, threshold: int = 1 << 20) -> onnx.ModelProto:
    """A copy whose initializers over ``threshold`` bytes keep their type and dims but point to
    external data that is never read (:data:`NOT_LOADED`): for shape inference and sessions of models
    over 2 GB. Copied field by field (:func:`light_copy`): the big weights are never copied."""
    return light_copy(proto, lambda t: t.data_location != onnx.TensorProto.EXTERNAL and tensor_bytes(t) >= threshold)


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
