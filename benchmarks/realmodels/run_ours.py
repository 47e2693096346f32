"""amct-nb on every model of the real-model set, next to ONNX Runtime's quantize_static baseline.

For each model: calibrate on 32 feeds (seed 0), evaluate the task check on 32 others (seed 1),
and record whether the deploy model is valid (ONNX checker + ONNX Runtime loads and runs it),
whether it is faithful (the task check), what was quantized, sizes and time. Writes
benchmarks/realmodels/OURS.md and OURS.json; the ORT columns come from BASELINE.json.

    python benchmarks/realmodels/run_ours.py [--only NAME ...] [--n 32]

``--only`` re-runs the named models and keeps the other rows of OURS.json.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections import Counter
from pathlib import Path

import onnx

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[1]))

from benchmarks.realmodels import catalog  # noqa: E402


def run_one(model: catalog.RealModel, n: int = 32) -> dict:
    import amct_nb as an
    from amct_nb.ir import GraphIndex, byte_size, is_large, make_session

    path = catalog.fetch(model)
    cal, ev = model.feeds(n, 0), model.feeds(n, 1)
    row = {"name": model.name, "task": model.task, "producer": model.producer}
    t = time.perf_counter()
    try:
        res = an.quantize(path, cal, progress=False)
    except an.AmctError as e:
        row.update(valid=False, error=str(e)[:300], time_s=round(time.perf_counter() - t, 1))
        return row
    except Exception as e:  # a crash inside amct-nb is a finding too: record it, go on with the next model
        row.update(valid=False, error=f"{type(e).__name__} (not an AmctError): {str(e)[:300]}",
                   time_s=round(time.perf_counter() - t, 1))
        return row
    row["time_s"] = round(time.perf_counter() - t, 1)
    dep = res.deploy_model
    try:
        if not is_large(dep):
            onnx.checker.check_model(dep)
        s_dep = make_session(dep)
        s_ref = make_session(onnx.load(path))
        names = [o.name for o in s_ref.get_outputs()]
        ref = [s_ref.run(names, f) for f in ev]
        test = [s_dep.run(names, f) for f in ev]
        row["valid"] = True
    except Exception as e:  # an invalid deploy model is exactly what this measures
        row.update(valid=False, error=f"{type(e).__name__}: {str(e)[:300]}")
        return row
    try:
        chk = model.check(ref, test)
    except Exception as e:  # the check itself failing on the outputs (e.g. NaN) counts as not passing
        chk = {"metric": "check raised", "value": float("nan"), "passed": False, "detail": f"{type(e).__name__}: {e}"}
    rep = res.report()
    wo = rep.get("weight_only") or {}
    idx = GraphIndex(res.prepared.model.graph)
    by_name = {l.name: l for l in res.prepared.layers}
    # float "layers" without a constant weight (MatMul between two activations): no weights to store int8
    weightless = {f["name"] for f in rep["float_layers"]
                  if f["name"] in by_name and not idx.is_const(by_name[f["name"]].weight)}
    row.update(
        check_metric=chk["metric"], check_value=round(float(chk["value"]), 4), passed=bool(chk["passed"]),
        detail=chk["detail"][:200], quantized_layers=len(rep["quantized_layers"]),
        float_layers=len(rep["float_layers"]), float_tensors=len(rep["float_tensors"]),
        weight_only_layers=len({u for v in wo.values() for u in v.get("users", ())}), weight_only_tensors=len(wo),
        # weight-only users that are not float layers of the report (Gather tables, LSTM/GRU): extra units
        weight_only_other=len({u for v in wo.values() for u in v.get("users", ())}
                              - {f["name"] for f in rep["float_layers"]}),
        float_without_weights=len(weightless),
        unsupported=len(rep["unsupported"]),
        size_mb=round(Path(path).stat().st_size / 1e6, 2), deploy_mb=round(byte_size(dep) / 1e6, 2),
        float_reasons=sorted({r["reason"].split(":")[0][:80] for r in rep["float_tensors"]})[:4],
        output_sqnr_db=round(min((e["sqnr_db"] for e in rep["output_error"].values()), default=float("nan")), 1),
        output_check_left_float=len(rep["output_check"].get("left_float", [])),
        output_check_before_db=rep["output_check"].get("before_sqnr_db"),
        bias_corrected_layers=rep.get("bias_correction", {}).get("corrected_layers"),
        run_at=time.strftime("%Y-%m-%d"),
    )
    return row


def _int8_share(r: dict) -> float:
    """Units with weights whose weights are int8 over all of them: int8 layers, float layers (some of them
    weight-only) and the weight-only units that are no layer (embedding tables, LSTM/GRU weights). Rows
    without that split count at least the weight-only units beyond the float layers as such units."""
    q, f = r.get("quantized_layers", 0), r.get("float_layers", 0) - r.get("float_without_weights", 0)
    wo = r.get("weight_only_layers")
    wo = wo if isinstance(wo, int) else 0
    other = r.get("weight_only_other", max(0, wo - f))
    return (q + wo) / max(q + f + other, 1)


def _share(r: dict) -> str:
    return f"{_int8_share(r):.0%}" if r.get("valid") else ""


def _ratio(r: dict) -> str:
    return f" ({r['deploy_mb'] / r['size_mb']:.2f})" if r.get("valid") and r.get("size_mb") else ""


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--only", nargs="*")
    ap.add_argument("--n", type=int, default=32)
    args = ap.parse_args()
    done = {}
    if args.only and (HERE / "OURS.json").exists():  # re-run some models, keep the others' rows
        done = {r["name"]: r for r in json.loads((HERE / "OURS.json").read_text())}
    for m in catalog.MODELS:
        if args.only and m.name not in args.only:
            continue
        r = run_one(m, args.n)
        done[m.name] = r
        print(json.dumps(r), flush=True)
    rows = [done[m.name] for m in catalog.MODELS if m.name in done]
    base = {}
    bj = HERE / "BASELINE.json"
    if bj.exists():
        for r in json.loads(bj.read_text()):
            chk = r.get("check") or {}
            base[r["name"]] = {
                "valid": r.get("checker") == "ok" and r.get("ort_load") == "ok" and r.get("ort_run") == "ok",
                "check_metric": chk.get("metric", r.get("raised") or r.get("checker") or ""),
                "check_value": round(float(chk["value"]), 4) if "value" in chk else "",
                "passed": bool(chk.get("passed")) and r.get("n_quantize_linear", 0) > 0,
                "size_mb": round(r.get("size_int8", 0) / 1e6, 2), "time_s": r.get("quantize_seconds", ""),
                "nothing": r.get("n_quantize_linear", 0) == 0,
            }
    table = ["| model | task check | amct-nb: valid | amct-nb: check | amct-nb: passes | "
             "int8 / weight-only / float layers | output SQNR dB (output check: before, units left float) | "
             "layers with int8 weights | size MB fp32 -> amct-nb (ratio) | amct-nb time s | "
             "ORT: valid | ORT: check | ORT: passes | ORT size MB | ORT time s |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        b = base.get(r["name"], {})
        if r.get("valid"):
            ours_chk = f"{r.get('check_value', '')}"
        else:
            ours_chk = "no model written: " + r.get("error", "")[:70]
        b_chk = b.get("check_value", "") if b.get("valid") else "invalid model"
        if b.get("nothing"):
            b_chk = f"{b_chk} (nothing quantized)"
        oc = ""
        if r.get("output_check_before_db") is not None:
            oc = f" ({r['output_check_before_db']}, {r.get('output_check_left_float', 0)})"
        table.append(
            f"| {r['name']} | {r.get('check_metric', b.get('check_metric', ''))[:45]} | {r.get('valid')} "
            f"| {ours_chk} | {r.get('passed', False)} | {r.get('quantized_layers', 0)} "
            f"/ {r.get('weight_only_layers', '-')} / {r.get('float_layers', 0)} "
            f"| {r.get('output_sqnr_db', '')}{oc} | {_share(r)} "
            f"| {r.get('size_mb', '')} -> {r.get('deploy_mb', '')}{_ratio(r)} "
            f"| {r.get('time_s', '')} | {b.get('valid', '')} | {b_chk} | {b.get('passed', '')} "
            f"| {b.get('size_mb', '')} | {b.get('time_s', '')} |")
    n_ok = sum(bool(r.get("passed")) for r in rows)
    n_valid = sum(bool(r.get("valid")) for r in rows)
    b_ok = sum(bool(base.get(r["name"], {}).get("passed")) for r in rows)
    b_valid = sum(bool(base.get(r["name"], {}).get("valid")) for r in rows)
    n85 = sum(_int8_share(r) >= 0.85 for r in rows if r.get("valid"))
    n85ok = sum(_int8_share(r) >= 0.85 and bool(r.get("passed")) for r in rows if r.get("valid"))
    n35 = sum(r.get("deploy_mb", 1e9) <= 0.35 * r.get("size_mb", 0) for r in rows if r.get("valid"))
    summary = (f"amct-nb: {n_valid}/{len(rows)} valid models written, {n_ok}/{len(rows)} pass their task check; "
               f"{n85}/{len(rows)} carry int8 weights on at least 85% of their quantizable layers ({n85ok} of them "
               f"also pass), {n35}/{len(rows)} are at most 0.35x their float size; "
               f"ONNX Runtime quantize_static: {b_valid}/{len(rows)} valid, {b_ok}/{len(rows)} pass (a model where "
               "nothing was quantized does not count as a pass).")
    head = (f"Produced by `python benchmarks/realmodels/run_ours.py` (calibration: {args.n} feeds, seed 0; "
            f"evaluation: {args.n} other feeds, seed 1; amct-nb default settings); ORT columns from "
            "`benchmarks/realmodels/baseline_ort.py` (BASELINE.json: quantize_static QDQ, per-channel, MinMax). "
            "Times are wall seconds of one run on this 2-core machine (amct-nb's include its output check). "
            "Weight-only: layers whose weights are stored int8 while the layer computes in float "
            "(`report()['weight_only']`); '-' = a row from a run before this column was recorded. Layers with "
            "int8 weights: (int8 layers + weight-only units) / (int8 layers + float layers + weight-only units "
            "that are no layer, such as embedding tables and LSTM weights); float layers without a constant weight "
            "(MatMul between two activations) are left out. Rows run on: "
            + ", ".join(f"{d} ({n})" for d, n in sorted(Counter(r.get("run_at", "before 2026-11-28")
                                                                   for r in rows).items())) + ".")
    (HERE / "OURS.md").write_text("\n".join(["# amct-nb vs ONNX Runtime quantize_static on real third-party models", "",
                                             head, "", summary, "", *table]) + "\n")
    (HERE / "OURS.json").write_text(json.dumps(rows, indent=1) + "\n")
    res = HERE.parent / "RESULTS.md"
    text = res.read_text() if res.exists() else ""
    mark = "<!-- realmodels -->"
    section = "\n".join([mark, "# Real third-party models: amct-nb vs ONNX Runtime quantize_static", "", head, "",
                         summary, "", *table, "", "Per-model details: benchmarks/realmodels/OURS.md, BASELINE.md.",
                         mark])
    if mark in text:
        a, _, rest = text.partition(mark)
        _, _, after = rest.partition(mark)
        text = a + section + after
    else:
        text = text.rstrip("\n") + "\n\n" + section + "\n"
    res.write_text(text)
    print(summary)
    print("\n".join(table))


if __name__ == "__main__":
    main()
