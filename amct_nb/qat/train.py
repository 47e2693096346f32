"""A training loop for those who do not bring one: PTQ warm start, QAT, checkpoints, AMCT's outputs.

:func:`retrain` calibrates the model (the PTQ result is the starting point: every grid and scale is
initialised from it), then trains the :class:`~amct_nb.qat.model.QatModel` with labels (cross
entropy) or, with ``distill=True``, against the float model's outputs (no labels needed: the
calibration images are enough), and writes AMCT's files from the learned record.

One process, or several under ``torchrun`` (``torch.distributed`` with DistributedDataParallel: gloo
on CPU, nccl on GPUs; each rank takes ``batch_size / world`` samples of every global batch from a
DistributedSampler, gradients are averaged, so the quantizers' parameters stay identical on every
rank; rank 0 alone writes checkpoints and outputs). The sample order of epoch ``e`` depends only on
``seed`` and ``e``, so ``resume=`` continues a run exactly: on CPU a resumed run ends with the same
weights as an uninterrupted one.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import logging
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F
from tqdm.auto import tqdm

from ..config import QuantConfig
from ..errors import AmctError, ConfigError, DataError
from ..ir import atomic_write_text
from ..ptq import QuantResult, build, collect_stats, prepare
from .graph import TorchGraph
from .model import QatModel

__all__ = ["retrain", "RetrainResult", "TrainingError", "as_arrays"]

log = logging.getLogger("amct_nb.qat")


class TrainingError(AmctError):
    """Training stopped (a NaN loss, a bad checkpoint); ``checkpoint`` is the last good one, if any."""

    def __init__(self, msg: str, checkpoint: Path | None = None):
        super().__init__(msg)
        self.checkpoint = checkpoint


@dataclass
class RetrainResult:
    """What :func:`retrain` made: the trained model's AMCT outputs (``result.save``), the PTQ start,
    the history (one row per epoch) and where things were written."""

    result: QuantResult | None
    ptq: QuantResult
    history: list[dict] = field(default_factory=list)
    checkpoints: list[Path] = field(default_factory=list)
    paths: dict = field(default_factory=dict)
    seconds: float = 0.0

    def save(self, outdir, prefix: str | None = None, **kw) -> dict:
        return self.result.save(outdir, prefix, **kw)


# -- data ----------------------------------------------------------------------------------------
def as_arrays(data, labels=None, preprocess=None, limit: int | None = None) -> tuple[np.ndarray, np.ndarray | None]:
    """(samples, labels or None) in memory from an array, a path any amct-nb loader opens, or a dataset."""
    from ..data import labels_of, open_data

    if isinstance(data, tuple) and len(data) == 2 and labels is None:
        data, labels = data
    if isinstance(data, np.ndarray):
        x = data[:limit] if limit else data
    else:
        kw = {}
        if isinstance(data, (str, os.PathLike)) and str(data).lower().endswith(".npz"):
            with np.load(data) as f:  # labels stored beside the samples (x, y) are labels, not a second input
                keys = list(f.keys())
            found = [k for k in ("y", "labels", "label") if k in keys]
            if found and len(keys) > 1:
                kw["labels_key"] = found[0]
        ds = open_data(data, preprocess, limit=limit, **kw)
        samples = []
        for s in ds:
            if isinstance(s, dict):
                if len(s) != 1:
                    raise DataError("training takes models with one input; this data has feeds with "
                                    f"{len(s)} inputs ({', '.join(s)})")
                s = next(iter(s.values()))
            samples.append(np.asarray(s, np.float32))
        if not samples:
            raise DataError(f"no samples in {data}")
        x = np.stack(samples)
        if labels is None:
            labels = labels_of(ds)
    bad = ~np.isfinite(x.reshape(len(x), -1)).all(axis=1)
    if bad.any():
        raise DataError(f"{int(bad.sum())} sample(s) hold NaN or infinite values (the first: sample "
                        f"{int(np.flatnonzero(bad)[0])}): clean the data before training")
    y = None if labels is None else np.asarray(labels)[: len(x)].astype(np.int64)
    if y is not None and len(y) != len(x):
        raise DataError(f"{len(x)} samples but {len(y)} labels: give one label per sample")
    return np.ascontiguousarray(x, np.float32), y


# -- distributed ---------------------------------------------------------------------------------
def _use_cuda(device: str) -> bool:
    if device not in ("auto", "cpu", "cuda"):
        raise ConfigError(f"device {device!r}: give 'auto' (a GPU when torch sees one), 'cpu' or 'cuda'")
    if device == "cuda" and not torch.cuda.is_available():
        raise ConfigError("device 'cuda' asked for, but torch sees no GPU (torch.cuda.is_available() is False): "
                          "install a CUDA build of torch, or train on device='cpu'")
    if device == "auto":  # a GPU for each process of this machine, else the CPU for all
        return torch.cuda.is_available() and torch.cuda.device_count() >= int(os.environ.get("LOCAL_WORLD_SIZE", "1"))
    return device == "cuda"


def _world(device: str = "auto") -> tuple[int, int, torch.device]:
    """(rank, world size, device); joins the process group torchrun set up (nccl on GPUs, gloo on CPU)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    cuda = _use_cuda(device)
    local = int(os.environ.get("LOCAL_RANK", "0"))
    if cuda and local >= torch.cuda.device_count():
        raise ConfigError(f"process {local} has no GPU of its own (torch sees {torch.cuda.device_count()}): start at "
                          "most one process per GPU, or train on device='cpu'")
    if world <= 1:
        return 0, 1, torch.device("cuda:0" if cuda else "cpu")
    if not dist.is_initialized():
        dist.init_process_group("nccl" if cuda else "gloo")
    device = torch.device(f"cuda:{local}") if cuda else torch.device("cpu")
    if cuda:
        torch.cuda.set_device(device)
    return dist.get_rank(), dist.get_world_size(), device


def _fingerprint(ptq: QuantResult, settings: dict) -> str:
    h = hashlib.sha256(ptq.record.to_text().encode())
    h.update(ptq.config.to_json(ptq.prepared.layers).encode())
    h.update(json.dumps(settings, sort_keys=True).encode())
    return h.hexdigest()[:16]


def _order(n: int, epoch: int, seed: int, rank: int, world: int) -> list[int]:
    """The samples of ``epoch`` for ``rank``: one permutation of all samples, dealt round robin."""
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed * 1000003 + epoch)).tolist()
    return perm[rank::world] if world > 1 else perm


def _loss(out, target, teacher_out, distill: bool):
    if not distill:
        return F.cross_entropy(out, target)
    if out.dim() == 2 and out.shape[1] > 1:  # a classifier: match the float model's class probabilities
        return F.kl_div(F.log_softmax(out, 1), F.log_softmax(teacher_out, 1), reduction="batchmean", log_target=True)
    return F.mse_loss(out, teacher_out)


def _top1(model, x, y, batch: int = 256) -> float | None:
    if y is None or x is None:
        return None
    model.eval()
    dev = next(model.parameters()).device
    with torch.no_grad():
        pred = torch.cat([model(torch.from_numpy(x[i:i + batch]).to(dev)).argmax(1).cpu()
                          for i in range(0, len(x), batch)])
    model.train()
    return float((pred.numpy() == y).mean())


def retrain(model, data, *, labels=None, eval_data=None, eval_labels=None, output=None, prefix: str | None = None,
            epochs: int = 1, steps: int | None = None, batch_size: int = 64, lr: float = 1e-3,
            distill: bool = False, config: QuantConfig | None = None, per_tensor: bool = False, weight_bits: int = 8,
            calibration_samples: int = 256, resume=None, checkpoint_dir=None, seed: int = 0,
            progress: bool = True, preprocess=None, callback=None, weight_lr: float | None = None,
            bn_freeze_steps: int = 0, device: str = "auto") -> RetrainResult:
    """Quantization-aware training of an ONNX model (see the module docstring); returns a RetrainResult.

    ``data``/``labels``: training samples (array, path or dataset; labels from the loader when it has
    them); ``distill``: train against the float model instead (labels ignored). ``output``: where AMCT's
    files, ``retrain_log.csv`` and the checkpoints (``checkpoints/epoch_N.pt``) go (rank 0). ``steps``:
    stop after this many optimizer steps (else ``epochs`` passes). ``resume``: a checkpoint to continue.
    ``weight_lr``: learning rate of the weights and biases (default ``lr``, which the quantizer grids use): lower
    keeps a few-image run from fitting the float model's outputs on those images only.
    ``bn_freeze_steps``: the BatchNorms folded into int8 layers train with batch statistics for this many
    steps, then fold for good (0: folded from the start; see :mod:`amct_nb.qat.bn`).
    ``device``: ``"auto"`` trains on a GPU when torch sees one for each process (``cuda:LOCAL_RANK`` under
    torchrun, nccl), else on the CPU (gloo); ``"cpu"`` or ``"cuda"`` force one. The outputs are the same files
    either way (a resumed run is byte-identical to an uninterrupted one on the CPU only).
    ``callback(step, loss, epoch)``: called after every optimizer step on rank 0 (a live loss plot in a notebook).
    With tensorboard installed, the loss per step and eval top-1 per epoch also go to ``output/tensorboard``."""
    t0 = time.perf_counter()
    rank, world, device = _world(device)
    torch.manual_seed(seed)
    if epochs < 1 or (steps is not None and steps < 1) or batch_size < 1 or not lr > 0:
        raise ConfigError(f"epochs {epochs}, steps {steps}, batch_size {batch_size}, lr {lr}: give positive values")
    if bn_freeze_steps < 0:
        raise ConfigError(f"bn_freeze_steps {bn_freeze_steps}: give 0 (BatchNorm folded from the start) or a "
                          "positive number of steps")
    if batch_size % world:
        raise ConfigError(f"batch_size {batch_size} does not split over {world} processes: use a multiple of {world}")
    x, y = as_arrays(data, labels, preprocess)
    if not distill and y is None:
        raise DataError("training needs labels: give labels= (or data with labels: an image folder with classes, IDX "
                        "with its labels file, CIFAR-10 binary), or distill=True to train against the float model "
                        "without labels")
    xe, ye = as_arrays(eval_data, eval_labels, preprocess) if eval_data is not None else (None, None)
    cfg = (config or QuantConfig(min_output_sqnr_db=None)).copy()
    cfg.bias_correction = False  # training learns the biases (and its record carries none)
    if per_tensor:
        cfg.default.channel_wise = False
    if weight_bits != 8:
        cfg.default.wts_bits = weight_bits
    prepared = prepare(model, cfg)
    cal = x[:calibration_samples]
    ptq = build(prepared, cfg, collect_stats(prepared, cal, progress=False))
    qm = QatModel(ptq, train_bn=bn_freeze_steps > 0).to(device)
    teacher = TorchGraph(prepared.model).to(device).eval() if distill else None
    if teacher is not None:
        for p in teacher.parameters():
            p.requires_grad_(False)
    settings = {"batch_size": batch_size, "lr": lr, "distill": distill, "seed": seed, "epochs": epochs,
                "steps": steps, "per_tensor": per_tensor, "weight_bits": weight_bits, "weight_lr": weight_lr,
                "bn_freeze_steps": bn_freeze_steps, "world": world}
    fp = _fingerprint(ptq, {k: v for k, v in settings.items() if k != "world"})
    per_epoch = math.ceil(len(x) / batch_size)
    total = steps if steps is not None else epochs * per_epoch
    n_epochs = math.ceil(total / per_epoch)
    opt = torch.optim.SGD([{"params": qm.float_parameters(), "lr": lr if weight_lr is None else weight_lr},
                           {"params": qm.grid_parameters()}], lr=lr, momentum=0.9)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 0.5 * (1 + math.cos(math.pi * min(s, total) / total)))
    start_epoch, step, history = 0, 0, []
    if resume is not None:
        start_epoch, step, history = _restore(resume, qm, opt, sched, fp)
    net = _ddp(qm) if world > 1 else qm
    out = Path(output) if output is not None else None
    ckdir = Path(checkpoint_dir) if checkpoint_dir is not None else (out / "checkpoints" if out else None)
    res = RetrainResult(None, ptq, history)
    bar = tqdm(total=total, initial=step, disable=not progress or rank != 0, desc="QAT", unit="step")
    board = _tensorboard(out) if rank == 0 else None
    last_good = None
    try:
        for epoch in range(start_epoch, n_epochs):
            order = _order(len(x), epoch, seed, rank, world)
            local = batch_size // world
            losses = []
            for i in range(0, len(order), local):
                if step >= total:
                    break
                if step == bn_freeze_steps and _freeze_bn(qm, opt, world) and world > 1:
                    net = _ddp(qm)  # gamma and beta left the graph
                idx = order[i:i + local]
                xb = torch.from_numpy(x[idx]).to(device)
                outp = net(xb)
                with torch.no_grad():
                    tout = teacher(xb) if teacher is not None else None
                target = torch.from_numpy(y[idx]).to(device) if y is not None and not distill else None
                loss = _loss(outp, target, tout, distill)
                if not torch.isfinite(loss):
                    raise TrainingError(f"the loss became {loss.item()} at step {step + 1} (epoch {epoch + 1}): "
                                        "training stopped; check the data for NaN/inf values, or lower the learning "
                                        "rate (--lr)"
                                        + (f"; the last good checkpoint is {last_good}" if last_good else ""),
                                        last_good)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                sched.step()
                step += 1
                losses.append(loss.item())
                bar.update(1)
                if callback is not None and rank == 0:
                    callback(step, losses[-1], epoch + 1)
                if board is not None:
                    board.add_scalar("loss", losses[-1], step)
                bar.set_postfix(loss=f"{np.mean(losses[-20:]):.4f}", epoch=epoch + 1)
            row = {"epoch": epoch + 1, "step": step, "loss": float(np.mean(losses)) if losses else None,
                   "lr": sched.get_last_lr()[0], "eval_top1": _top1(qm, xe, ye) if rank == 0 else None}
            history.append(row)
            if board is not None and row["eval_top1"] is not None:
                board.add_scalar("eval_top1", row["eval_top1"], step)
            if rank == 0 and ckdir is not None:
                last_good = _checkpoint(ckdir / f"epoch_{epoch + 1}.pt", qm, opt, sched, epoch + 1, step, history, fp)
                res.checkpoints.append(last_good)
            if rank == 0 and out is not None:
                _write_csv(out / "retrain_log.csv", history)
            if step >= total:
                break
    except KeyboardInterrupt:
        if rank == 0 and ckdir is not None:
            path = _checkpoint(ckdir / "interrupted.pt", qm, opt, sched, epoch, step, history, fp)
            log.warning("interrupted at step %d: checkpoint %s (resume= continues from the start of epoch %d)",
                        step, path, epoch + 1)
        raise
    finally:
        bar.close()
        if board is not None:
            board.close()
    _freeze_bn(qm, opt, world)
    if world > 1:
        _check_same_parameters(qm, rank, world)
    qm.eval()
    qm.cpu()  # the export reads the parameters as numpy arrays
    res.result = qm.export()
    if rank == 0 and out is not None:
        res.paths = res.result.save(out, prefix)
    if world > 1:
        dist.barrier()
    res.seconds = time.perf_counter() - t0
    return res


def _ddp(qm: QatModel):
    """DistributedDataParallel over the parameters still in the graph (a folded BN's gamma and beta are not)."""
    for m in qm.bns.values():
        m.requires_grad_(m.active)
    return torch.nn.parallel.DistributedDataParallel(qm)


def _freeze_bn(qm: QatModel, opt, world: int) -> bool:
    """Fold the BatchNorms still training; the ranks first average their running statistics (each updated
    them from its own share of the last batch), so every rank folds the same weights. True if any folded."""
    live = [m for m in qm.bns.values() if m.active]
    if not live:
        return False
    if world > 1:
        with torch.no_grad():
            for m in live:
                for buf in (m.running_mean, m.running_var):
                    dist.all_reduce(buf)
                    buf /= world
    for p in qm.freeze_bn():  # folded: the weights' momentum was in the unfolded terms
        opt.state.pop(p, None)
    return True


def _check_same_parameters(qm, rank: int, world: int) -> None:
    """Every rank must hold the same weights and grids after training (DDP averages the gradients); the
    sums stay on the parameters' device (nccl gathers only GPU tensors)."""
    with torch.no_grad():
        vec = torch.cat([p.detach().reshape(-1).double() for p in qm.parameters()])
        mine = torch.stack([vec.sum(), (vec * torch.arange(1, vec.numel() + 1, dtype=torch.float64)).sum()])
        every = [torch.zeros_like(mine) for _ in range(world)]
        dist.all_gather(every, mine)
    if any(not torch.equal(every[0], e) for e in every[1:]):
        sums = [e.tolist() for e in every]
        raise TrainingError(f"rank {rank}: the processes ended with different parameters ({sums})"
                            ": please report this")


def _tensorboard(out: Path | None):
    """A TensorBoard writer into ``out/tensorboard`` when tensorboard is installed (the seeds log there)."""
    if out is None:
        return None
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        return None
    return SummaryWriter(str(out / "tensorboard"))


def _checkpoint(path: Path, qm, opt, sched, epoch: int, step: int, history: list, fp: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    torch.save({"model": qm.state_dict(), "optimizer": opt.state_dict(), "scheduler": sched.state_dict(),
                "epoch": epoch, "step": step, "history": history, "fingerprint": fp}, tmp)
    os.replace(tmp, path)
    return path


def _restore(path, qm, opt, sched, fp: str) -> tuple[int, int, list]:
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"checkpoint not found: {p}")
    try:
        ck = torch.load(p, map_location="cpu", weights_only=False)
    except Exception as e:  # noqa: BLE001 - any unreadable file
        raise ConfigError(f"{p} is not an amct-nb training checkpoint ({e})") from e
    if not isinstance(ck, dict) or "fingerprint" not in ck:
        raise ConfigError(f"{p} is not an amct-nb training checkpoint")
    if ck["fingerprint"] != fp:
        raise ConfigError(f"checkpoint {p} belongs to another model, config or training settings (fingerprint "
                          f"{ck['fingerprint']} vs {fp}): resume with the same model, data, config, batch size, "
                          "learning rate and seed, or start afresh")
    qm.load_state_dict(ck["model"])
    opt.load_state_dict(ck["optimizer"])
    sched.load_state_dict(ck["scheduler"])
    return int(ck["epoch"]), int(ck["step"]), list(ck["history"])


def _write_csv(path: Path, rows: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=["epoch", "step", "loss", "lr", "eval_top1"])
    w.writeheader()
    for r in rows:
        w.writerow(r)
    atomic_write_text(path, buf.getvalue())
