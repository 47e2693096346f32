"""Graph rewrites: pure ``ModelProto -> (ModelProto, changes)`` functions, one per module.

Every pass copies its input (the caller's model is never modified) and returns the new model
with a list of human-readable change notes (empty when nothing applied).
"""

from .constants import constants_to_initializers
from .fold_bn import fold_batchnorm
from .names import name_nodes
from .noops import remove_noops
from .opset import upgrade_opset
from .shapes import infer_shapes

__all__ = ["constants_to_initializers", "fold_batchnorm", "name_nodes", "remove_noops", "upgrade_opset", "infer_shapes"]
