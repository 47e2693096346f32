"""Model writers: the deploy (QDQ int8), fake-quant, gated and local models, all from a QuantPlan."""

from .compact import compact_weights, packed_bits
from .deploy import build_deploy
from .fake_quant import build_fake_quant
from .gated import GATES, Unit, build_gated, units_of
from .local import build_local, local_output
from .metadata import stamp
from .plan import PASS_ACTIVATIONS, LayerQuant, QuantPlan, TensorQuant, WeightOnly

__all__ = ["build_deploy", "build_fake_quant", "build_gated", "build_local", "local_output", "units_of", "Unit",
           "GATES", "QuantPlan", "TensorQuant", "LayerQuant", "WeightOnly", "PASS_ACTIVATIONS", "stamp",
           "compact_weights", "packed_bits"]
