"""Shape inference: ONNX's own, then ONNX Runtime's symbolic one where dims stay unknown."""

from __future__ import annotations

import onnx

from ..ir import is_large, without_large_data
from .base import Change

__all__ = ["infer_shapes"]


def infer_shapes(model: onnx.ModelProto) -> tuple[onnx.ModelProto, list[Change]]:
    """Return a copy of the model with ``value_info`` filled in as far as inference can go.

    Failures of inference are not fatal: quantization needs element types (known from the
    runtime anyway) more than shapes, so a model whose shapes cannot be inferred keeps what it had.
    """
    if is_large(model):  # protobuf cannot serialize it: infer on a copy without the big weights
        light, notes = infer_shapes(without_large_data(model))
        out = onnx.ModelProto()
        out.CopyFrom(model)
        del out.graph.value_info[:]
        out.graph.value_info.extend(light.graph.value_info)
        del out.graph.output[:]
        out.graph.output.extend(light.graph.output)
        return out, notes
    notes = []
    try:
        out = onnx.shape_inference.infer_shapes(model, check_type=False, strict_mode=False, data_prop=True)
    except Exception as e:
        out = onnx.ModelProto()
        out.CopyFrom(model)
        notes.append(Change("shape_inference",
                            f"ONNX shape inference failed ({str(e).splitlines()[0] if str(e) else e!r}); "
                            "shapes left as declared"))
    if _has_unknown(out):
        try:
            from onnxruntime.tools.symbolic_shape_infer import SymbolicShapeInference

            sym = SymbolicShapeInference.infer_shapes(out, auto_merge=True, guess_output_rank=False)
            if sym is not None:
                out = sym
                notes.append(Change("shape_inference",
                                    "symbolic shape inference (onnxruntime) filled unknown dimensions"))
        except Exception:  # symbolic inference is best effort
            pass
    return out, notes


def _has_unknown(model: onnx.ModelProto) -> bool:
    names = {o for n in model.graph.node for o in n.output if o}
    known = {vi.name for vi in model.graph.value_info} | {o.name for o in model.graph.output}
    return bool(names - known)
