"""BatchNorm during QAT: batch statistics for the first steps, then folded for good.

Preparation folds every BatchNormalization into the layer before it (the deploy model has no BN). By
default QAT trains that folded layer as it will be deployed. With ``bn_freeze_steps=N`` the folded BN
comes back for the first N steps as a :class:`FoldedBn` on the layer, the approach of Jacob et al.
(2018, section 3.2) and torch.ao's ConvBn modules, expressed in the folded layer's own terms:

* the folded layer computes ``c = conv(x, W) + b``; training normalises ``c`` with the batch's
  statistics, ``y = gamma * (c - mean_B) / sqrt(var_B + eps) + beta``, and updates running
  statistics (momentum 0.1); at the start ``running = (mean, var)`` of ``c`` on the first batch,
  ``gamma = sqrt(var + eps)`` and ``beta = mean``, so ``y`` at running statistics equals the folded
  model exactly;
* the weight quantizer sees ``W * gamma / sqrt(running_var + eps)``, the weight the deploy model holds
  once the statistics freeze, and the convolution's output is divided back by that factor before the
  normalisation (so the weight grid trained is the grid deployed);
* at step N (and at export), :meth:`FoldedBn.fold` writes ``W * gamma / sqrt(running_var + eps)`` and
  ``beta + (b - running_mean) * gamma / sqrt(running_var + eps)`` into the layer's weight and bias and
  the module switches off: from then on the layer trains as deployed, int32 bias included.

Under torch.distributed the first batch's statistics are averaged over the ranks, so every rank
starts from the same ``gamma``/``beta``; DistributedDataParallel broadcasts the running statistics.
Only the layers the plan makes int8 get one; layers left float keep their BN folded.
"""

from __future__ import annotations

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

__all__ = ["FoldedBn"]


class FoldedBn(nn.Module):
    """The BatchNormalization folded into one layer, trained with batch statistics until :meth:`fold`.

    ``axis``: the output-channel axis of the layer's weight (0 for Conv and Gemm with transB, 1 for
    Gemm without it and ConvTranspose)."""

    def __init__(self, channels: int, axis: int, eps: float = 1e-5, momentum: float = 0.1):
        super().__init__()
        self.axis, self.eps, self.momentum = axis, eps, momentum
        self.gamma = nn.Parameter(torch.ones(channels))
        self.beta = nn.Parameter(torch.zeros(channels))
        self.register_buffer("running_mean", torch.zeros(channels))
        self.register_buffer("running_var", torch.ones(channels))
        self.register_buffer("started", torch.tensor(False))
        self.register_buffer("frozen", torch.tensor(False))

    @property
    def active(self) -> bool:
        return not bool(self.frozen)

    def factor(self) -> torch.Tensor:
        """gamma / sqrt(running_var + eps): what folding multiplies the weight's output channels by."""
        return self.gamma / torch.sqrt(self.running_var + self.eps)

    def _along(self, v: torch.Tensor, dim: int, ndim: int) -> torch.Tensor:
        shape = [1] * ndim
        shape[dim] = -1
        return v.reshape(shape)

    def weight(self, w: torch.Tensor) -> torch.Tensor:
        """The folded weight at the running statistics (what the weight quantizer sees)."""
        return w * self._along(self.factor(), self.axis, w.dim())

    def output(self, out: torch.Tensor, b: torch.Tensor | None) -> torch.Tensor:
        """The layer's output (computed with :meth:`weight`, without bias) normalised as BN does."""
        c = out / self._along(self.factor(), 1, out.dim())
        if b is not None:
            c = c + self._along(b, 1, out.dim())
        if self.training and not bool(self.started):
            self._start(c)
        return F.batch_norm(c, self.running_mean, self.running_var, self.gamma, self.beta, training=self.training,
                            momentum=self.momentum, eps=self.eps)

    @torch.no_grad()
    def _start(self, c: torch.Tensor) -> None:
        dims = [d for d in range(c.dim()) if d != 1]
        mom = torch.stack([c.mean(dims), (c * c).mean(dims)])
        if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
            dist.all_reduce(mom)
            mom /= dist.get_world_size()
        mean, var = mom[0], (mom[1] - mom[0] ** 2).clamp_min(0)
        self.running_mean.copy_(mean)
        self.running_var.copy_(var)
        self.gamma.copy_(torch.sqrt(var + self.eps))
        self.beta.copy_(mean)
        self.started.fill_(True)

    @torch.no_grad()
    def fold(self, w: torch.Tensor, b: torch.Tensor) -> None:
        """Write the folded weight and bias into ``w`` and ``b`` (in place) and switch off."""
        f = self.factor()
        if bool(self.started):
            w.copy_(self.weight(w))
            b.copy_(self.beta + (b - self.running_mean) * f)
        self.frozen.fill_(True)
