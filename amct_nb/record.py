"""The quantization record: scale/offset per layer and per quantized tensor, in AMCT's text format.

AMCT writes a protobuf text ``ScaleOffsetRecord``::

    record {
      key: "conv1"
      value {
        scale_d: 0.0235294
        offset_d: -128
        scale_w: 0.00123
        offset_w: 0
      }
    }

``scale_d``/``offset_d`` quantize the layer's input activation (offset on the signed int8 grid),
``scale_w``/``offset_w`` its weight (one per output channel, offsets 0). amct-nb also quantizes
tensors that are not a layer's input (layer outputs, residual adds) so ONNX Runtime can chain
int8 kernels; those appear as records keyed ``tensor:<name>`` with only scale_d/offset_d, which
AMCT's parser reads as layers without weights.
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .errors import ConfigError

__all__ = ["LayerRecord", "Record", "TENSOR_PREFIX"]

TENSOR_PREFIX = "tensor:"
#: fields of AMCT's ``SingleLayerRecord`` (and Caffe's shape fields) that are kept and written back unchanged;
#: those with a value here are accepted only at it (AMCT's default), since the scales would mean something else
KEPT_FIELDS = {"shift_bit": None, "tensor_balance_factor": "1", "skip_fusion": None, "dst_type": None,
               "act_type": "INT8", "wts_type": None, "fakequant_precision_mode": "DEFAULT", "scale_h": None,
               "offset_h": None, "scale_r": None, "offset_r": None, "channels": None, "height": None, "width": None}
_WHY = {"tensor_balance_factor": "DMQ balancing is not implemented: these scales were computed on balanced "
                                 "activations; calibrate again with amct-nb",
        "act_type": "activations are quantized to int8 only",
        "fakequant_precision_mode": "scales stay float32; the fp16 rounding for Ascend is not implemented"}
_FIELDS = ("scale_d", "offset_d", "scale_w", "offset_w", "nuq_level", "bias_correction", *KEPT_FIELDS)


def _check_kept(where: str, key, fname: str, val: str) -> None:
    """Refuse a field AMCT's record does not have (naming a close match) and a kept one off its default."""
    if fname not in KEPT_FIELDS:
        near = difflib.get_close_matches(fname, _FIELDS, n=1)
        hint = f" (did you mean '{near[0]}'?)" if near else ""
        raise ConfigError(f"{where}: unknown field '{fname}' in the record of '{key}'{hint}: the accepted ones are "
                          f"{', '.join(_FIELDS)}")
    default = KEPT_FIELDS[fname]
    if default is not None and val.strip('"') != default and not (default == "1" and _is_one(val)):
        raise ConfigError(f"{where}: {fname} {val} in the record of '{key}' is not supported by amct-nb "
                          f"({_WHY[fname]}): remove it or set it to {default}")


def _is_one(val: str) -> bool:
    try:
        return float(val) == 1.0
    except ValueError:
        return False


def _f(x) -> str:
    """float32 written so that it reads back bit-identical."""
    return repr(float(np.float32(x)))


@dataclass
class LayerRecord:
    scale_d: float | None = None
    offset_d: int | None = None
    scale_w: list[float] = field(default_factory=list)
    offset_w: list[int] = field(default_factory=list)
    #: the int8 levels a non-uniform (NUQ) layer's weights take (empty: the uniform grid), ``nuq_level`` lines
    levels: list[int] = field(default_factory=list)
    #: added to the layer's float bias before its int32 quantization (NUQ's bias correction), ``bias_correction`` lines
    bias_correction: list[float] = field(default_factory=list)
    extra: dict = field(default_factory=dict)  # other fields seen in a file (kept on rewrite)


@dataclass
class Record:
    """Ordered map layer (or ``tensor:<name>``) -> LayerRecord."""

    layers: dict[str, LayerRecord] = field(default_factory=dict)

    def tensor(self, name: str) -> LayerRecord | None:
        return self.layers.get(TENSOR_PREFIX + name)

    def to_text(self) -> str:
        lines = []
        for key, r in self.layers.items():
            lines.append("record {")
            lines.append(f'  key: "{key}"')
            lines.append("  value {")
            if r.scale_d is not None:
                lines.append(f"    scale_d: {_f(r.scale_d)}")
            if r.offset_d is not None:
                lines.append(f"    offset_d: {int(r.offset_d)}")
            for s in r.scale_w:
                lines.append(f"    scale_w: {_f(s)}")
            for o in r.offset_w:
                lines.append(f"    offset_w: {int(o)}")
            for v in r.levels:
                lines.append(f"    nuq_level: {int(v)}")
            for v in r.bias_correction:
                lines.append(f"    bias_correction: {_f(v)}")
            for k, vals in r.extra.items():
                for v in vals:
                    lines.append(f"    {k}: {v}")
            lines.append("  }")
            lines.append("}")
        return "\n".join(lines) + "\n"

    @classmethod
    def from_text(cls, text: str, where: str = "record") -> Record:
        try:
            return cls._parse(text, where)
        except IndexError:
            raise ConfigError(
                f"{where}: the file ends inside a record: it is truncated; re-run the calibration"
            ) from None

    @classmethod
    def _parse(cls, text: str, where: str) -> Record:
        rec = cls()
        tokens = re.findall(r'"(?:[^"\\]|\\.)*"|[{}:]|[^\s{}:"]+', re.sub(r"#[^\n]*", "", text))
        i = 0

        def expect(tok):
            nonlocal i
            if i >= len(tokens) or tokens[i] != tok:
                got = tokens[i] if i < len(tokens) else "end of file"
                raise ConfigError(f"{where}: expected '{tok}' but found '{got}': the record file is malformed")
            i += 1

        while i < len(tokens):
            if tokens[i] != "record":
                raise ConfigError(f"{where}: unexpected '{tokens[i]}' at top level: expected 'record {{ ... }}'")
            i += 1
            expect("{")
            key, lr = None, LayerRecord()
            while tokens[i] != "}":
                name = tokens[i]
                i += 1
                if name == "key":
                    expect(":")
                    key = tokens[i].strip('"')
                    i += 1
                elif name == "value":
                    if tokens[i] == ":":
                        i += 1
                    expect("{")
                    while tokens[i] != "}":
                        fname = tokens[i]
                        i += 1
                        expect(":")
                        val = tokens[i]
                        i += 1
                        try:
                            if fname == "scale_d":
                                lr.scale_d = float(val)
                            elif fname == "offset_d":
                                lr.offset_d = int(val)
                            elif fname == "scale_w":
                                lr.scale_w.append(float(val))
                            elif fname == "offset_w":
                                lr.offset_w.append(int(val))
                            elif fname == "nuq_level":
                                lr.levels.append(int(val))
                            elif fname == "bias_correction":
                                lr.bias_correction.append(float(val))
                            else:
                                _check_kept(where, key, fname, val)
                                lr.extra.setdefault(fname, []).append(val)
                        except ValueError:
                            raise ConfigError(f"{where}: field {fname} of '{key}' has a bad value '{val}'") from None
                    expect("}")
                else:
                    raise ConfigError(f"{where}: unknown field '{name}' in a record entry")
                if i >= len(tokens):
                    raise ConfigError(f"{where}: the file ends inside a record: it is truncated")
            expect("}")
            if key is None:
                raise ConfigError(f"{where}: a record entry has no key")
            rec.layers[key] = lr
        return rec

    @classmethod
    def load(cls, path) -> Record:
        p = Path(path)
        if not p.exists():
            raise ConfigError(f"record file not found: {p}: run the calibration first")
        return cls.from_text(p.read_text(), where=str(p))
