"""ONNX Runtime sessions over in-memory models (also over 2 GB), and models with extra outputs."""

from __future__ import annotations

import weakref

import numpy as np
import onnx
import onnxruntime as ort
from onnx import helper, numpy_helper

from ..errors import ModelError
from .expose import body_paths, expose
from .external import Spill
from .model import fit_ir_version, fitted_ir_version, is_large, tensor_elem_types, without_large_data

__all__ = ["make_session", "lean_options", "with_outputs", "float_tensors", "ObservingSession"]


def make_session(model: onnx.ModelProto | Spill, *, threads: int | None = None, optimize: bool = True,
                 options: ort.SessionOptions | None = None, outputs: list[str] | None = None,
                 stack: str = "scan") -> ort.InferenceSession:
    """An ONNX Runtime CPU session for a ModelProto, or a model written out as a :class:`~amct_nb.ir.external.Spill`
    (errors become ModelError); ``outputs``: tensors it also outputs (as :func:`with_outputs`; a tensor of an
    If/Loop body comes out flattened, see :mod:`amct_nb.ir.expose`, whose ``stack`` this passes on).

    A model over 2 GB goes to ONNX Runtime through a temporary file (a Spill: graph and weights written one
    weight at a time, removed once the session has them): ONNX Runtime maps the weights from it, so the
    session holds no second copy of them in the process's own memory; where the file cannot be written,
    ONNX Runtime copies them from numpy arrays."""
    so = options or ort.SessionOptions()
    if threads:
        so.intra_op_num_threads = threads
    so.log_severity_level = 3
    if not optimize:
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    try:
        if isinstance(model, Spill):
            so.add_session_config_entry("session.disable_prepacking", "1")
            return ort.InferenceSession(str(model.path), so, providers=["CPUExecutionProvider"])
        if not is_large(model):
            m = model
            if outputs or fitted_ir_version(model) != model.ir_version:  # else serialized as it is: no copy
                m = onnx.ModelProto()
                m.CopyFrom(model)
                _add_outputs(m, outputs or [], stack)
                fit_ir_version(m)
            return ort.InferenceSession(m.SerializeToString(), so, providers=["CPUExecutionProvider"])
        # over 2 GB: the graph without its big weights (a light copy, field by field)
        m = without_large_data(model)
        _add_outputs(m, outputs or [], stack)
        fit_ir_version(m)
        so.add_session_config_entry("session.disable_prepacking", "1")  # no second copy of the weights
        try:
            spill = Spill(m, weights=model)
        except OSError:
            return _session_from_arrays(model, m, so)
        try:
            sess = ort.InferenceSession(str(spill.path), so, providers=["CPUExecutionProvider"])
        finally:
            spill.close()  # the session has mapped the weights (on Windows the files go with the session)
        if spill.folder.exists():
            weakref.finalize(sess, spill.close)
        return sess
    except Exception as e:
        msg = str(e).strip().splitlines()[-1] if str(e).strip() else repr(e)
        raise ModelError(
            f"ONNX Runtime cannot load the model: {msg}. Check that the model runs in onnxruntime "
            f"{ort.__version__} (python -c \"import onnxruntime as o; o.InferenceSession('model.onnx')\")"
        ) from e


def _session_from_arrays(model: onnx.ModelProto, light: onnx.ModelProto,
                         so: ort.SessionOptions) -> ort.InferenceSession:
    """A session of ``light`` (a light copy of ``model``) whose big weights ONNX Runtime copies from numpy."""
    big = {t.name for t in light.graph.initializer if t.data_location == onnx.TensorProto.EXTERNAL}
    names, arrays = [], []
    for t in model.graph.initializer:
        if t.name in big:
            names.append(t.name)
            arrays.append(np.require(numpy_helper.to_array(t), requirements="C"))  # keeps 0-d shapes
    values = [ort.OrtValue.ortvalue_from_numpy(a) for a in arrays]  # views: the arrays must outlive them
    so.add_external_initializers(names, values)
    sess = ort.InferenceSession(light.SerializeToString(), so, providers=["CPUExecutionProvider"])
    sess._amct_nb_weights = (arrays, values)  # the options may still refer to them: keep them alive with it
    return sess


def lean_options() -> ort.SessionOptions:
    """Session options for short measurement runs: no memory arena kept around afterwards."""
    so = ort.SessionOptions()
    so.enable_cpu_mem_arena = False
    return so


def float_tensors(model: onnx.ModelProto) -> list[str]:
    """Names of the float32 activation tensors of the main graph, in graph order."""
    types = tensor_elem_types(model)
    inits = {t.name for t in model.graph.initializer}
    names = [i.name for i in model.graph.input if i.name not in inits]
    for n in model.graph.node:
        names.extend(o for o in n.output if o)
    f32 = onnx.TensorProto.FLOAT
    return [n for n in names if types.get(n, f32) == f32 and n not in inits and types.get(n) is not None]


def with_outputs(model: onnx.ModelProto, names: list[str]) -> onnx.ModelProto:
    """A copy of the model that also outputs ``names`` (float32 tensors); for a session,
    ``make_session(model, outputs=names)`` does the same without copying a large model's weights."""
    m = onnx.ModelProto()
    m.CopyFrom(model)
    _add_outputs(m, names)
    return m


def _add_outputs(m: onnx.ModelProto, names: list[str], stack: str = "scan") -> None:
    if not names:
        return
    have = {o.name for o in m.graph.output}
    types = tensor_elem_types(m)
    routed = set(expose(m, [n for n in names if n not in have], types, stack))  # tensors of If/Loop bodies: 1-D
    for n in names:
        if n not in have:
            m.graph.output.append(helper.make_tensor_value_info(n, types.get(n, onnx.TensorProto.FLOAT),
                                                                ["amct_n"] if n in routed else None))
            have.add(n)


class ObservingSession:
    """``make_session(model, outputs=names, ...)`` for observing tensors, If/Loop bodies' included: when a Loop's
    tensor turns out to change size between iterations (ONNX Runtime refuses to stack it as a scan output), the
    session is built again with loop-carried accumulators (``stack="concat"``) and the run repeated."""

    def __init__(self, model, outputs: list[str], **kw):
        self._model, self._outputs, self._kw = model, outputs, kw
        self._routed = any(body_paths(model.graph).get(n) for n in outputs) if isinstance(model, onnx.ModelProto) \
            else False
        self.stack = "scan"
        self.session = make_session(model, outputs=outputs, **kw)

    def run(self, names, feed):
        try:
            return self.session.run(names, feed)
        except Exception as e:
            if not self._routed or self.stack != "scan" or "Inconsistent shape in loop output" not in str(e):
                raise
        self.stack = "concat"
        self.session = make_session(self._model, outputs=self._outputs, stack="concat", **self._kw)
        return self.session.run(names, feed)

    def get_inputs(self):
        return self.session.get_inputs()

    def get_outputs(self):
        return self.session.get_outputs()
