"""``amct-nb retrain``: runs :func:`amct_nb.qat.retrain` in this process, or relaunches itself under
torchrun (``python -m torch.distributed.run``) with ``--nproc N``."""

from __future__ import annotations

import os
import subprocess
import sys
import warnings

__all__ = ["run"]


def _torchrun(args) -> int:
    """The same command under torchrun with ``args.nproc`` processes (one thread each)."""
    argv = list(args.argv)
    out, skip = [], False
    for a in argv:  # drop --nproc N / --nproc=N
        if skip:
            skip = False
            continue
        if a == "--nproc":
            skip = True
            continue
        if a.startswith("--nproc="):
            continue
        out.append(a)
    cores = os.cpu_count() or 1
    if args.nproc > cores:
        warnings.warn(f"--nproc {args.nproc} is more than the {cores} cores here: the processes will share them",
                      stacklevel=2)
    env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={args.nproc}",
           "-m", "amct_nb.cli", *out]
    r = subprocess.run(cmd, env=env)
    if r.returncode != 0:
        print(f"amct-nb retrain: a worker failed (exit {r.returncode}); torchrun stopped the others and no output "
              "model was written", file=sys.stderr)
    return r.returncode


def run(args, preprocess=None) -> int:
    if args.nproc > 1 and int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return _torchrun(args)
    import torch

    from ..config import QuantConfig
    from .train import retrain

    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    cfg = QuantConfig.load(args.config) if args.config else None
    if cfg is not None and cfg.min_output_sqnr_db is not None:
        cfg.min_output_sqnr_db = None  # training, not the safety net, recovers the accuracy
    res = retrain(args.model, args.data, eval_data=args.eval, output=args.output, prefix=args.prefix,
                  epochs=args.epochs, steps=args.steps, batch_size=args.batch_size, lr=args.lr, distill=args.distill,
                  config=cfg, per_tensor=args.per_tensor, weight_bits=args.weight_bits,
                  calibration_samples=args.calibration_samples, resume=args.resume, seed=args.seed,
                  progress=not args.quiet, preprocess=preprocess, weight_lr=args.weight_lr,
                  bn_freeze_steps=args.bn_freeze_steps, device=args.device)
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1:  # one line per rank, in torchrun's per-rank logs
        print(f"rank {os.environ.get('RANK', '?')} of {world}: {res.history[-1]['step'] if res.history else 0} steps, "
              "parameters identical on every rank" + ("; wrote the outputs" if res.paths else ""), flush=True)
    if not args.quiet and res.paths:
        last = res.history[-1] if res.history else {}
        top1 = last.get("eval_top1")
        print(f"trained {last.get('step', 0)} steps in {res.seconds:.0f} s"
              + (f"; top-1 on --eval {top1:.4f}" if top1 is not None else ""))
        for k in ("fake_quant", "deploy", "record"):
            print(f"  {k:10s} {res.paths[k]}")
    return 0
