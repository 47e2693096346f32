"""Writing models piece by piece, one weight at a time, never a serialized copy of the whole model.

Protobuf serializes a message in one buffer (and ``ByteSize`` serializes too), and frees nothing of a
message before the whole message goes: for a model of several GB both are copies of every weight.
:func:`write_serialized` writes the bytes ``SerializeToString(deterministic=True)`` gives, a weight at a
time; :func:`save_external` writes what ``onnx.save_model(..., save_as_external_data=True)`` writes;
:class:`Spill` puts a model in a temporary file for an ONNX Runtime session (which maps its weights from
the file) and reads it back.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import onnx

from .model import _has_unknown, copy_fields, is_not_loaded, light_copy, raw_nbytes, tensor_bytes

__all__ = ["write_serialized", "save_external", "Spill"]


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        b, n = n & 0x7F, n >> 7
        out.append(b | 0x80 if n else b)
        if not n:
            return bytes(out)


def _split(msg, number: int):
    """(the fields of ``msg`` numbered below ``number``, those above), as two messages of its type."""
    lo, hi = type(msg)(), type(msg)()
    names = [(f.name, f.number) for f in msg.DESCRIPTOR.fields]
    copy_fields(msg, lo, skip=[n for n, k in names if k >= number])
    copy_fields(msg, hi, skip=[n for n, k in names if k <= number])
    return lo, hi


_GRAPH, _INITIALIZER = 7, 5  # ModelProto.graph, GraphProto.initializer (one-byte tags: length-delimited)


def write_serialized(model: onnx.ModelProto, f) -> None:
    """Write ``model.SerializeToString(deterministic=True)`` to file ``f``, serializing one weight at a time
    (protobuf writes fields in field-number order: the parts before the graph, the graph's parts before
    its initializers, each initializer, then the rest)."""
    g = model.graph
    if _has_unknown(model, g) or not len(g.initializer):
        f.write(model.SerializeToString(deterministic=True))
        return
    top_lo, top_hi = _split(model, _GRAPH)
    g_lo, g_hi = _split(g, _INITIALIZER)
    head, tail = g_lo.SerializeToString(deterministic=True), g_hi.SerializeToString(deterministic=True)
    sizes = [tensor_bytes(t) for t in g.initializer]
    graph = len(head) + sum(1 + len(_varint(n)) + n for n in sizes) + len(tail)
    f.write(top_lo.SerializeToString(deterministic=True))
    f.write(bytes([_GRAPH << 3 | 2]) + _varint(graph) + head)
    for t, n in zip(g.initializer, sizes):
        data = t.SerializeToString(deterministic=True)
        if len(data) != n:  # cannot happen for a tensor the ONNX checker accepts
            raise ValueError(f"initializer {t.name}: {len(data)} bytes, its type and dims say {n}")
        f.write(bytes([_INITIALIZER << 3 | 2]) + _varint(n))
        f.write(data)
        del data
    f.write(tail)
    f.write(top_hi.SerializeToString(deterministic=True))


_THRESHOLD = 1024  # onnx.save_model's size_threshold (on sys.getsizeof(raw_data): 33 bytes more than its length)


def _goes_external(t: onnx.TensorProto) -> bool:
    """Whether onnx.save_model moves the tensor's raw data to the data file."""
    n = raw_nbytes(t)
    return n is not None and n + 33 >= _THRESHOLD


def _presence(t: onnx.TensorProto) -> tuple:
    """What saving with external data changes in a tensor besides its data, to put back on loading."""
    return t.HasField("data_location"), t.data_location, [(e.key, e.value) for e in t.external_data]


def save_external(model: onnx.ModelProto, target: Path, data_name: str, weights: onnx.ModelProto | None) -> list:
    """What ``onnx.save_model(model, target, save_as_external_data=True, all_tensors_to_one_file=True,
    location=data_name, size_threshold=1024)`` writes, the same bytes, without copying the model: the
    main graph's weights go one at a time from ``model`` (or ``weights``) to the data file, the model
    file is a light copy (:func:`~amct_nb.ir.model.light_copy`) pointing at them. Returns what
    :class:`Spill` needs to load the tensors back as they were."""
    source = {t.name: t for t in weights.graph.initializer} if weights is not None else {}

    def origin(t):
        return source[t.name] if is_not_loaded(t) else t

    def external(t):
        return _goes_external(origin(t))

    light = light_copy(model, lambda t: is_not_loaded(t) or external(t))
    offset, restore = 0, []
    with open(target.parent / data_name, "wb") as f:
        for t, lt in zip(model.graph.initializer, light.graph.initializer):
            if not is_not_loaded(lt):
                continue
            src = origin(t)
            if not external(t):  # left out of ``model`` but inline in the file: as ``weights`` holds it
                lt.CopyFrom(src)
                continue
            restore.append(_presence(src))
            data = src.raw_data
            f.write(data)
            del lt.external_data[:]
            for k, v in (("location", data_name), ("offset", offset), ("length", len(data))):
                e = lt.external_data.add()
                e.key, e.value = k, str(v)
            offset += len(data)
            del data
    # initializers of subgraphs, as onnx writes them (after the main graph's)
    subs = list(_initializer_tensors(light))[len(light.graph.initializer):]
    restore += [_presence(t) for t in subs if _goes_external(t)]
    onnx.external_data_helper.convert_model_to_external_data(light, True, data_name, _THRESHOLD)
    onnx.external_data_helper.write_external_data_tensors(light, str(target.parent))
    with open(target, "wb") as f:
        f.write(light.SerializeToString())
    if offset == 0 and (target.parent / data_name).stat().st_size == 0:
        (target.parent / data_name).unlink()
    return restore


def _initializer_tensors(model: onnx.ModelProto):
    return onnx.external_data_helper._get_initializer_tensors(model)


class Spill:
    """``model`` written into a temporary folder (``path``: the graph, its weights in one data file beside it),
    for an ONNX Runtime session that maps the weights from the file (:func:`~amct_nb.ir.runtime.make_session`
    takes a Spill) while the ModelProto itself can go; :meth:`load` gives the same ModelProto back.
    ``weights``: as for :func:`save_model_file`. Raises OSError when the folder cannot be written (a full
    disk): the temporary folder is the system's (``TMPDIR``). :meth:`close` removes the files."""

    DATA = "model.onnx.data"

    def __init__(self, model: onnx.ModelProto, *, weights: onnx.ModelProto | None = None):
        self.folder = Path(tempfile.mkdtemp(prefix="amct-nb-spill-"))
        self.path = self.folder / "model.onnx"
        try:
            self._restore = save_external(model, self.path, self.DATA, weights)
        except BaseException:
            self.close()
            raise

    def load(self) -> onnx.ModelProto:
        """The model that was written, field for field (its weights read back one at a time)."""
        m = onnx.ModelProto()
        m.ParseFromString(self.path.read_bytes())
        restore = iter(self._restore)
        helper = onnx.external_data_helper
        with open(self.folder / self.DATA, "rb") as f:
            for t in _initializer_tensors(m):
                if not (helper.uses_external_data(t) and helper.ExternalDataInfo(t).location == self.DATA):
                    continue
                info = helper.ExternalDataInfo(t)
                f.seek(info.offset or 0)
                t.raw_data = f.read(info.length)
                has, where, entries = next(restore)
                t.ClearField("data_location")
                if has:
                    t.data_location = where
                del t.external_data[:]
                for k, v in entries:
                    e = t.external_data.add()
                    e.key, e.value = k, v
        return m

    def close(self) -> None:
        shutil.rmtree(self.folder, ignore_errors=True)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
