"""Why a layer or tensor stays float: a code that programs compare, a text that people read."""

from __future__ import annotations

from enum import Enum

__all__ = ["Code", "Reason"]


class Code(str, Enum):
    """The kinds of reasons; code compares these, never the texts."""

    UNSUPPORTED = "unsupported"  # the op's pattern cannot be quantized (the registry's check says why)
    WEIGHT_DTYPE = "weight_dtype"  # the weight is not float32
    SHARED_WEIGHT = "shared_weight"  # several layers read the weight
    STEM = "stem"  # fewer input channels than min_input_channels
    DISABLED = "disabled"  # quant_enable: false in the config
    NOT_IN_RECORD = "not_in_record"  # a given record has no entry for the layer
    INPUT_FLOAT = "input_float"  # the layer's input tensor stays float
    BIAS_OVERFLOW = "bias_overflow"  # the int32 bias would overflow
    NO_STATS = "no_stats"  # no statistics were collected for a tensor
    NONFINITE = "nonfinite"  # a tensor holds NaN/Inf by design
    EMPTY = "empty"  # no finite values observed
    TENSOR_CHECK = "tensor_check"  # the safety net: quantizing the tensor destroys it
    CHANNEL_CHECK = "channel_check"  # the safety net: one grid wipes out small-range channels
    OUTPUT_CHECK = "output_check"  # the output check: the outputs cannot afford it
    RECURRENT = "recurrent"  # LSTM/GRU/RNN
    SUBGRAPH = "subgraph"  # inside an If/Loop/Scan body


class Reason(str):
    """A structured reason: ``code`` (a :class:`Code`) for programs, the text for people.

    A Reason is the string of its text (so ``str(r)``, ``"x" in r`` and json output read as before),
    carrying its code; programs compare ``r.code``, never the text."""

    code: Code

    def __new__(cls, code: Code | str, text: str) -> Reason:
        obj = super().__new__(cls, text)
        obj.code = Code(code)
        return obj

    def __reduce__(self):
        return (Reason, (self.code, str(self)))

    def __repr__(self) -> str:
        return f"Reason({self.code.value}: {str(self)!r})"

    @property
    def text(self) -> str:
        return str(self)

    def as_dict(self) -> dict:
        return {"code": self.code.value, "text": str(self)}
