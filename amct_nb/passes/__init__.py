"""Graph rewrites: pure ``ModelProto -> (ModelProto, changes)`` functions, one per module.

No pass modifies its input (the caller's model is never modified): it returns a new model with a list
of :class:`~amct_nb.passes.base.Change`, or, for the passes of :func:`~amct_nb.ptq.prepared.prepare_passes`
when nothing applies, the input itself with no changes (no copy: copy it before editing it). Which passes
prepare a model for quantization, in which order, is :func:`amct_nb.ptq.prepared.prepare_passes`.
"""

from .base import BN_FOLDED, Change, fusion_info
from .constants import constants_to_initializers, fold_weight_chains
from .fold_bn import fold_batchnorm
from .names import name_nodes
from .noops import remove_noops
from .opset import upgrade_opset
from .pads import fold_pads
from .shapes import infer_shapes
from .unshare import WEIGHT_UNSHARED, unshare_weights

__all__ = ["Change", "BN_FOLDED", "fusion_info", "constants_to_initializers", "fold_weight_chains", "fold_batchnorm",
           "name_nodes", "remove_noops", "upgrade_opset", "fold_pads", "infer_shapes", "unshare_weights",
           "WEIGHT_UNSHARED"]
