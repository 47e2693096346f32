"""The ``amct-nb`` command: a thin client of the public Python API.

    amct-nb calibrate MODEL.onnx --data DATA --output OUTDIR [--prefix NAME]
    amct-nb auto-calibrate MODEL.onnx --data DATA --evaluator EVAL.py --output OUTDIR [--max-loss X]
    amct-nb convert-qat QDQ_MODEL.onnx --output OUTDIR [--recalibrate DATA]
    amct-nb inspect MODEL.onnx
    amct-nb workbench MODEL [--data DATA] [--eval EVAL]     (the notebook extra: a page in the browser)
    amct-nb demo

Errors print one line that names the problem and the fix (exit code 2); ``--debug`` shows the
traceback too.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path

__all__ = ["main"]


def _floats(text: str):
    vals = [float(v) for v in str(text).replace(",", " ").split()]
    return vals[0] if len(vals) == 1 else tuple(vals)


def _add_data_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("image preprocessing (for a folder of images)")
    g.add_argument("--preset",
                   help="imagenet | efficientnet-lite | cifar10 | fashion-mnist (options below override it)")
    g.add_argument("--size", type=int, help="resize the shorter side to SIZE (or both sides with --resize-mode exact)")
    g.add_argument("--crop", type=int, help="center crop CROP x CROP after resizing")
    g.add_argument("--resize-mode", choices=["shorter", "exact"])
    g.add_argument("--interpolation", choices=["bilinear", "bicubic", "nearest"])
    g.add_argument("--scale", type=float, help="multiply pixel values (0..255) by SCALE first, e.g. 0.00392157")
    g.add_argument("--mean", type=_floats, help="subtract per channel, e.g. '0.485,0.456,0.406' (after --scale)")
    g.add_argument("--std", type=_floats, help="divide per channel, e.g. '0.229,0.224,0.225'")
    g.add_argument("--layout", choices=["NCHW", "NHWC"])
    g.add_argument("--channel-order", choices=["RGB", "BGR", "L"])
    p.add_argument("--num-samples", type=int, help="use only the first N samples of DATA")


def _preprocess(args):
    from .data import Preprocess, preset

    fields = {
        "size": args.size, "crop": args.crop, "resize_mode": args.resize_mode, "interpolation": args.interpolation,
        "scale": args.scale, "mean": args.mean, "std": args.std, "layout": args.layout,
        "channel_order": args.channel_order,
    }
    given = {k: v for k, v in fields.items() if v is not None}
    if args.preset:
        return preset(args.preset, **given)
    if given:
        return Preprocess(**given)
    return None


def _open_data(args):
    from .data import open_data

    return open_data(args.data, _preprocess(args), limit=args.num_samples)


def _add_config_options(c: argparse.ArgumentParser) -> None:
    c.add_argument("--config", help="AMCT-style config.json with per-layer settings")
    c.add_argument("--algo", choices=["mse", "minmax", "percentile", "entropy"],
                   help="activation range algorithm for all layers")
    c.add_argument("--per-tensor", action="store_true", help="per-tensor weight scales (default: per channel)")
    c.add_argument("--symmetric", action="store_true", help="symmetric activations (default: asymmetric)")
    c.add_argument("--skip-layers", help="comma-separated layer names to leave float")
    c.add_argument("--saturation-guard", choices=["always", "auto", "pairs", "reduce_range", "off"],
                   help="auto (default): if this CPU's int8 kernels saturate (x86 without VNNI), layers that could "
                        "store uint8 weights (same values, exact); always: do so whatever this CPU is (deploy files "
                        "for other CPUs); pairs: move weight pairs; reduce_range: 7-bit weights; off")
    c.add_argument("--no-bias-correction", action="store_true",
                   help="leave biases as they are (default: add the mean shift of each layer's weight rounding)")
    c.add_argument("--nuq", "--nuq-steps", dest="nuq", type=int, choices=[16, 32], metavar="STEPS",
                   help="non-uniform weights (AMCT's NUQ): at most STEPS (16 or 32) int8 values per Conv/Gemm/MatMul "
                        "layer (depthwise convolutions stay uniform)")
    c.add_argument("--nuq-iterations", type=int, metavar="N",
                   help="rounds of level / scale refitting for --nuq (default 1)")
    c.add_argument("--compact", action="store_true",
                   help="store few-level (NUQ) weights of the deploy model bit-packed with their codebook "
                        "(4-5 bits per weight; ONNX Runtime expands them at load into the same int8 model)")
    c.add_argument("--quiet", action="store_true")
    c.add_argument("--debug", action="store_true", help="show tracebacks on errors")
    _add_data_options(c)


def _setup_logging(verbose: bool):
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING, format="%(message)s")


def _config(args):
    """The QuantConfig the calibration options give (``--config`` first, then the flags over it)."""
    from . import QuantConfig

    cfg = QuantConfig.load(args.config) if args.config else QuantConfig()
    if args.algo:
        cfg.default.act_algo = args.algo
    if args.per_tensor:
        cfg.default.channel_wise = False
    if args.symmetric:
        cfg.activation_offset = False
    if args.skip_layers:
        cfg.skip_layers += [s for s in args.skip_layers.split(",") if s]
    if args.saturation_guard:
        cfg.saturation_guard = args.saturation_guard
    if args.no_bias_correction:
        cfg.bias_correction = False
    return cfg


def _with_nuq(cfg, args, layers):
    """``cfg`` with the ``--nuq`` flags applied to the model's layers."""
    from .errors import ConfigError
    from .ptq import with_nuq

    if args.nuq is None:
        if args.nuq_iterations is not None:
            raise ConfigError("--nuq-iterations needs --nuq 16 or --nuq 32 (the number of weight levels)")
        return cfg
    return with_nuq(cfg, layers, args.nuq, 1 if args.nuq_iterations is None else args.nuq_iterations)


def cmd_calibrate(args) -> int:
    from . import build, collect_stats, prepare
    from .ir import check_output_dir
    from .ptq import needs_channel_moments

    t0 = time.perf_counter()
    cfg = _config(args)
    check_output_dir(args.output, args.model)
    prepared = prepare(args.model, cfg)
    cfg = _with_nuq(cfg, args, prepared.layers)
    cfg.validate([l.name for l in prepared.layers])
    data = _open_data(args)
    stats = collect_stats(prepared, data, progress=not args.quiet,
                          channel_moments=needs_channel_moments(cfg, prepared.layers))
    result = build(prepared, cfg, stats)
    paths = result.save(args.output, prefix=args.prefix, compact=args.compact)
    rep = result.report()
    if not args.quiet:
        print(f"quantized {len(rep['quantized_layers'])} layer(s), {len(rep['float_layers'])} left float, "
              f"{rep['quantized_tensors']} activation tensor(s) int8; "
              f"saturation guard: {rep['saturation_guard']['mode']}")
        for fl in rep["float_layers"]:
            print(f"  float: {fl['name']}: {fl['reason']}")
        for ft in rep["float_tensors"]:
            print(f"  float tensor: {ft['name']}: {ft['reason']}")
        for u in rep["unsupported"]:
            print(f"  not quantized: {u['name']} ({u['op_type']}): {u['reason']}")
        for name, e in rep["output_error"].items():
            print(f"output {name}: SQNR {e['sqnr_db']:.1f} dB, cosine {e['cosine']:.5f} vs the float model")
        ws = rep.get("weight_storage")
        if ws:
            back = (rep.get("output_check") or {}).get("nuq_to_uniform") or []
            print(f"non-uniform weights: {ws['nuq_weights']} of {ws['int8_weights']} weights, "
                  f"{ws['entropy_bits_per_weight']} bits per weight (entropy)"
                  + (f"; {len(back)} layer(s) back to uniform by the output check" if back else ""))
        oc = rep.get("output_check") or {}
        if "before_sqnr_db" in oc and oc.get("left_float"):
            print(f"output check: {oc['before_sqnr_db']} dB with everything int8 < {oc['target_sqnr_db']} dB: "
                  f"{len(oc['left_float'])} layer(s)/tensor(s) left float")
        sz = rep["size_bytes"]
        dep = paths["deploy"].stat().st_size if args.compact else sz["deploy"]
        note = " (compact weights)" if args.compact else ""
        print(f"size {sz['original'] / 1e6:.2f} MB -> {dep / 1e6:.2f} MB{note}; {time.perf_counter() - t0:.1f} s")
        for k in ("fake_quant", "deploy", "config", "record", "modified", "log"):
            print(f"  {k:10s} {paths[k]}")
    return 0


def cmd_retrain(args) -> int:
    """``amct-nb retrain``: the torch room's runner (loaded only for this command)."""
    try:
        from .qat.cli import run
    except ImportError as e:
        from .errors import NotSupportedError

        raise NotSupportedError(f"retrain needs the torch extra ({e}): pip install 'amct-nb[torch]'") from e
    return run(args, _preprocess(args))


def cmd_convert_qat(args) -> int:
    from .convert import convert_qat
    from .data import open_data
    from .ir import check_output_dir

    t0 = time.perf_counter()
    check_output_dir(args.output, args.model)
    data = open_data(args.recalibrate, _preprocess(args), limit=args.num_samples) if args.recalibrate else None
    result = convert_qat(args.model, saturation_guard=args.saturation_guard, recalibrate=data,
                         progress=not args.quiet)
    paths = result.save(args.output, prefix=args.prefix)
    if not args.quiet:
        c = result.report()["conversion"]
        print(f"converted {c['qat_layers']} layer(s) with the QAT model's integers, {len(result.float_layers)} left "
              f"float, {c['quantized_tensors']} activation tensor(s) int8 ({c['activation_dtype']}); "
              f"{c['weights']['kept']}")
        for n, why in result.float_layers.items():
            print(f"  float: {n}: {why}")
        print(f"saturation: {c['saturation']['advice']}")
        print(f"bias requantized to int32 at scale_d * scale_w: max |error| "
              f"{c['bias_requantization']['max_abs_error']:.3g}")
        if c["recalibration"]:
            print(f"recalibrated {c['recalibration']['changed']} of {c['recalibration']['tensors']} activation grid(s)")
        out = c["output_vs_qat_model"]
        for n, e in (out.get("deploy") or {}).items():
            print(f"output {n}: cosine {e['cosine']:.5f} vs the QAT model ({out['samples']} samples)")
        print(f"{time.perf_counter() - t0:.1f} s")
        for k in ("fake_quant", "deploy", "quant_json", "record", "report"):
            print(f"  {k:10s} {paths[k]}")
    return 0


def _load_evaluator(path):
    """(evaluate, metric_eval or None) from a Python file: module-level ``evaluate(model_file) -> float``
    (and ``metric_eval(original, new) -> (passed, loss)``), or AMCT's ``customize_evaluator`` object."""
    import importlib.util

    from .errors import ConfigError

    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"evaluator file not found: {p}: give a .py file that defines evaluate(model_file) -> float")
    spec = importlib.util.spec_from_file_location("amct_nb_user_evaluator", p)
    mod = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(mod)
    except Exception as e:
        raise ConfigError(f"importing the evaluator file {p} failed ({type(e).__name__}: {e}): fix the file") from e
    obj = getattr(mod, "customize_evaluator", None)
    evaluate = getattr(mod, "evaluate", None) or getattr(obj, "evaluate", None)
    metric_eval = getattr(mod, "metric_eval", None) or getattr(obj, "metric_eval", None)
    if not callable(evaluate):
        raise ConfigError(f"{p} defines no evaluate(model_file) -> float (nor a customize_evaluator object with one): "
                          "add a function that scores the ONNX model at model_file, higher is better")
    return evaluate, metric_eval


def cmd_auto_calibrate(args) -> int:
    import tempfile

    from . import collect_stats, prepare
    from .auto import AutoCalibrationError, loss_within, search
    from .errors import ConfigError
    from .ir import atomic_write_text, check_output_dir, save_model_file
    from .ptq import needs_channel_moments

    t0 = time.perf_counter()
    cfg = _config(args)
    evaluate, metric_eval = _load_evaluator(args.evaluator)
    if metric_eval is None and args.max_loss is None:
        raise ConfigError("give the accuracy target: --max-loss X (original metric - new metric), or define "
                          "metric_eval(original, new) -> (passed, loss) in the evaluator file")
    check_output_dir(args.output, args.model)
    prepared = prepare(args.model, cfg)
    cfg = _with_nuq(cfg, args, prepared.layers)
    cfg.validate([l.name for l in prepared.layers])
    obs = collect_stats(prepared, _open_data(args), progress=not args.quiet,
                        channel_moments=needs_channel_moments(cfg, prepared.layers))
    with tempfile.TemporaryDirectory(prefix="amct-nb-auto-") as work:

        def score(res) -> float:
            if res is None:
                return evaluate(str(args.model))
            path = Path(work) / "candidate.onnx"
            save_model_file(res.deploy_model if args.evaluate_on == "deploy" else res.fake_quant_model, path)
            return evaluate(str(path))

        try:
            outcome = search(prepared, obs, score, metric_eval or loss_within(args.max_loss), cfg,
                             strategy=args.strategy, sensitivity=args.sensitivity, progress=not args.quiet)
        except AutoCalibrationError as e:
            if e.history:
                from .auto import AutoCalibration

                hist = AutoCalibration(0.0, e.history, [], e.layers, "", "", None, cfg).history_json()
                atomic_write_text(Path(args.output) / "amct_log" / "accuracy_based_auto_calibration_record.json", hist)
            raise
    paths = outcome.save(args.output, prefix=args.prefix, compact=args.compact)
    if not args.quiet:
        f = outcome.final
        print(f"original metric {outcome.original_metric:.6g}; {outcome.evaluations} evaluation(s); "
              f"{len(outcome.float_layers)} of {len(outcome.layers)} layer(s) rolled back to float; final metric "
              f"{f.metric:.6g} (loss {f.loss:.6g}); ranking: {outcome.sensitivity}; {time.perf_counter() - t0:.1f} s")
        for n in outcome.float_layers:
            print(f"  float: {n}")
        for k in ("fake_quant", "deploy", "final_config", "ranking", "history"):
            print(f"  {k:12s} {paths[k]}")
    return 0


def cmd_inspect(args) -> int:
    from . import prepare

    p = prepare(args.model)
    m = p.original
    print(f"{p.name}: opset {max((o.version for o in m.opset_import if o.domain in ('', 'ai.onnx')), default=0)}, "
          f"{len(m.graph.node)} nodes, producer {m.producer_name} {m.producer_version}".rstrip())
    from .ir import input_specs

    for s in input_specs(p.model):
        print(f"  input  {s.describe()}")
    for o in p.model.graph.output:
        print(f"  output {o.name}")
    for n in p.notes:
        print(f"  prepare: {n}")
    print(f"{sum(l.quantizable for l in p.layers)} quantizable layer(s):")
    for l in p.layers:
        state = "ok" if l.quantizable else f"float: {l.reason}"
        print(f"  {l.name:40s} {l.op_type:14s} {str(list(l.weight_shape)):22s} {state}")
    return 0


def cmd_workbench(args) -> int:
    """``amct-nb workbench``: the Workbench as a page in the browser (Voila; loaded only for this command)."""
    import dataclasses

    try:
        from .ui.app import serve
    except ImportError as e:
        from .errors import NotSupportedError

        raise NotSupportedError(f"the Workbench app needs the notebook extra ({e}): "
                                "pip install 'amct-nb[notebook]'") from e
    pp = _preprocess(args)
    return serve(args.model, data=args.data, eval=args.eval, preprocess=None if pp is None else dataclasses.asdict(pp),
                 num_samples=args.num_samples, eval_samples=args.eval_samples, output=args.output, port=args.port,
                 open_browser=not args.no_browser)


def build_parser() -> argparse.ArgumentParser:
    from . import __version__

    ap = argparse.ArgumentParser(prog="amct-nb", description="Quantize ONNX models to int8 (AMCT-style outputs).")
    ap.add_argument("--version", action="version", version=f"amct-nb {__version__}")
    ap.add_argument("--debug", action="store_true", help="show tracebacks on errors")
    sub = ap.add_subparsers(dest="command", required=True)

    c = sub.add_parser("calibrate", help="post-training int8 calibration of an ONNX model")
    c.add_argument("model", help="the float ONNX model (never modified)")
    c.add_argument("--data", required=True, help="folder of images, .npy, .npz, or folder of .npz files")
    c.add_argument("--output", required=True, help="output folder (created if needed)")
    c.add_argument("--prefix", help="name of the output models (default: the model file's stem)")
    _add_config_options(c)
    c.set_defaults(func=cmd_calibrate)

    a = sub.add_parser("auto-calibrate", help="accuracy-based automatic calibration: the most int8 layers that keep "
                                              "your metric within a target")
    a.add_argument("model", help="the float ONNX model (never modified)")
    a.add_argument("--data", required=True, help="calibration data: folder of images, .npy, .npz, or folder of .npz")
    a.add_argument("--evaluator", required=True, help="a .py file defining evaluate(model_file) -> float (higher is "
                                                      "better) and optionally metric_eval(original, new) -> (passed, "
                                                      "loss); AMCT's customize_evaluator object works too")
    a.add_argument("--output", required=True, help="output folder (created if needed)")
    a.add_argument("--prefix", help="name of the output models (default: the model file's stem)")
    a.add_argument("--max-loss", type=float, help="largest acceptable original - new metric, e.g. 0.005")
    a.add_argument("--strategy", choices=["Recovering", "BinarySearch"], help="search (default: Recovering; "
                                                                              "BinarySearch is AMCT's)")
    a.add_argument("--sensitivity", choices=["output", "output_left_out", "CosineSimilarity", "MseSensitivity"],
                   help="layer ranking (default: output; CosineSimilarity is AMCT's)")
    a.add_argument("--evaluate-on", choices=["deploy", "fake_quant"], default="deploy",
                   help="which quantized model evaluate() gets (default: the deploy model ONNX Runtime runs)")
    _add_config_options(a)
    a.set_defaults(func=cmd_auto_calibrate)

    r = sub.add_parser("retrain", help="quantization-aware training (the torch extra): PTQ warm start, then training "
                                       "with labels or by distillation; AMCT's outputs")
    r.add_argument("model", help="the float ONNX model (never modified)")
    r.add_argument("--data", required=True, help="training data: image folder with class subfolders, IDX, CIFAR-10 "
                                                 "binary, .npz with x/y, .npy (with --distill)")
    r.add_argument("--output", required=True, help="output folder: AMCT's files, retrain_log.csv, checkpoints/")
    r.add_argument("--prefix", help="name of the output models (default: the model file's stem)")
    r.add_argument("--eval", help="evaluation data with labels (top-1 per epoch in retrain_log.csv)")
    g = r.add_mutually_exclusive_group()
    g.add_argument("--epochs", type=int, default=1)
    g.add_argument("--steps", type=int, help="optimizer steps in all (instead of --epochs)")
    r.add_argument("--batch-size", type=int, default=64, help="global batch (split over --nproc processes)")
    r.add_argument("--lr", type=float, default=1e-3)
    r.add_argument("--weight-lr", type=float, help="learning rate of weights and biases (default: --lr)")
    r.add_argument("--bn-freeze-steps", type=int, default=0, help="BatchNorm trains with batch statistics for N "
                   "steps, then folds into its layer for good (default 0: folded from the start)")
    r.add_argument("--distill", action="store_true", help="train against the float model's outputs (no labels)")
    r.add_argument("--per-tensor", action="store_true", help="per-tensor weight scales (default: per channel)")
    r.add_argument("--weight-bits", type=int, choices=[8, 4], default=8)
    r.add_argument("--config", help="AMCT-style config.json")
    r.add_argument("--calibration-samples", type=int, default=256, help="samples for the PTQ warm start")
    r.add_argument("--nproc", type=int, default=1, help="train with N processes (torchrun: nccl on GPUs, one per "
                                                        "process; gloo on CPU)")
    r.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto",
                   help="auto (default): a GPU when torch sees one, else the CPU")
    r.add_argument("--resume", help="a checkpoint (checkpoints/epoch_N.pt) to continue from")
    r.add_argument("--seed", type=int, default=0)
    r.add_argument("--quiet", action="store_true")
    r.add_argument("--debug", action="store_true", help="show tracebacks on errors")
    _add_data_options(r)
    r.set_defaults(func=cmd_retrain)

    v = sub.add_parser("convert-qat", help="convert a QAT / QDQ model (PyTorch, TensorFlow, ONNX Runtime, NNCF) to "
                                           "AMCT's outputs, keeping its scales and integer weights")
    v.add_argument("model", help="the QDQ ONNX model (never modified)")
    v.add_argument("--output", required=True, help="output folder (created if needed)")
    v.add_argument("--prefix", help="name of the output models (default: the model file's stem)")
    v.add_argument("--recalibrate", metavar="DATA",
                   help="re-observe the activation ranges on DATA (images, .npy, .npz); the QAT weights are kept")
    v.add_argument("--saturation-guard", choices=["always", "auto", "off", "pairs"], default="auto",
                   help="auto (default): if this CPU saturates (x86 without VNNI), layers whose weight pairs would "
                        "store uint8 weights (same QAT integers, exact); always: whatever this CPU is; off; "
                        "pairs: move those pairs (changes QAT integers)")
    v.add_argument("--quiet", action="store_true")
    v.add_argument("--debug", action="store_true", help="show tracebacks on errors")
    _add_data_options(v)  # preprocessing of a --recalibrate image folder, --num-samples
    v.set_defaults(func=cmd_convert_qat)

    i = sub.add_parser("inspect", help="list a model's inputs and quantizable layers")
    i.add_argument("model")
    i.add_argument("--debug", action="store_true")
    i.set_defaults(func=cmd_inspect)

    w = sub.add_parser("workbench", help="the Workbench in the browser: look at a model, calibrate, compare, save "
                                         "AMCT's outputs (the notebook extra; served by Voila on 127.0.0.1)")
    w.add_argument("model", help="an ONNX model's path, or a sample model (fmnist-resnet, ...) with its own data")
    w.add_argument("--data", help="calibration data: folder of images, .npy, .npz, folder of .npz, IDX, CIFAR-10")
    w.add_argument("--eval", help="evaluation data for the compare panel, with labels if it has them (default: a "
                                  "sample model's own, else the first --eval-samples of --data)")
    w.add_argument("--eval-samples", type=int, default=200, help="use the first N evaluation samples (default 200)")
    w.add_argument("--output", default="outputs/workbench", help="the save button's output folder "
                                                                 "(default: outputs/workbench)")
    w.add_argument("--port", type=int, help="port on 127.0.0.1 (default 8866, or a free one if it is taken)")
    w.add_argument("--no-browser", action="store_true", help="print the page's address, do not open a browser")
    w.add_argument("--debug", action="store_true", help="show tracebacks on errors")
    _add_data_options(w)
    w.set_defaults(func=cmd_workbench)

    try:
        from .demo import add_demo_parser

        add_demo_parser(sub)
    except ImportError:
        pass
    return ap


def main(argv=None) -> int:
    ap = build_parser()
    args = ap.parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)  # what retrain --nproc relaunches under torchrun
    _setup_logging(False)
    from .errors import AmctError

    try:
        return int(args.func(args) or 0)
    except AmctError as e:
        if getattr(args, "debug", False):
            raise
        print(f"amct-nb: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("amct-nb: interrupted; nothing was written", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
