"""How close is the cost model (hf_fast/cost_curves.py) to the engine? Predicted against measured engine latency of
MiniLM-L6-shaped engines with several kinds of masks, in one interleaved run (issue 20, item 4).

The masks: dense; uniform 65 / 77.8 / 80%; one fully dense layer among 80% ones; every attn_out dense among 80%
ones; the per-Linear sparsities of two latency-mode students (helpers h5 and h7, benchmarks/HISTORY.md) and of a
trained global-80% student (60% floor, top layers at 96-100%); optionally a real trained int8 artifact (--artifact),
whose own masks are predicted from its weights. Synthetic engines are random weights with those zero-block fractions
(hf_fast.profile.synthetic_plan: what the default export runs). Every engine is timed in the same rounds, process CPU
time (1 thread), each timed call after two untimed calls of the same engine.

    python benchmarks/cost_model_check.py --cost-file costs.json --seconds 75 [--artifact DIR] [--json out.json]
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))


def masks() -> dict[str, dict[tuple[int, str], float]]:
    from hf_fast.cost_curves import ROLES

    def tab(rows):  # per layer: (qkv, attn_out, ffn_in, ffn_out)
        return {(i, r): v for i, row in enumerate(rows) for r, v in zip(ROLES, row, strict=True)}

    return {
        "dense": tab([(0, 0, 0, 0)] * 6),
        "uniform 80%": tab([(.8,) * 4] * 6),
        "uniform 77.8%": tab([(.778,) * 4] * 6),
        "uniform 65%": tab([(.65,) * 4] * 6),
        "latency (h5)": tab([(0, 0, 0, 0), (.93, .65, .65, .81), (.89, .65, .95, .95), (.89, .65, .95, .95),
                             (.95, .945, .95, .95), (.65, 0, .95, .95)]),
        "latency (h7)": tab([(.95, .65, .65, .82), (.95, .95, .88, .90), (.95, .95, .95, .86), (.95, .87, .65, .68),
                             (.65, 0, .65, 0), (.65, 0, .65, 0)]),
        "global 80% (trained)": tab([(.875, .833, .6, .6), (.654, .619, .6, .616), (.663, .601, .635, .713),
                                     (.664, .776, .961, .967), (.862, .97, .993, .994), (.982, .996, .998, .999)]),
        "layer 0 dense, 80%": tab([(0, 0, 0, 0)] + [(.8,) * 4] * 5),
        "attn_out dense, 80%": tab([(.8, 0, .8, .8)] * 6),
    }


def artifact_engine(path: str):
    """(runner, per-Linear zero-block fractions) of a MiniLM-shaped int8 artifact in the engine."""
    import numpy as np
    import onnx

    from hf_fast.blocks import block_sparsity
    from hf_fast.runtime.engine import NativeEngine
    from hf_fast.runtime.plan import build_plan

    cfg = json.loads((Path(path) / "fast_config.json").read_text())
    plan = build_plan(onnx.load(str(Path(path) / "model.onnx")), cfg["num_heads"])
    sp = {}
    for i, layer in enumerate(plan.layers):
        sp[(i, "qkv")] = block_sparsity(np.concatenate([layer.q.weight, layer.k.weight, layer.v.weight]), (4, 1))
        for r in ("attn_out", "ffn_in", "ffn_out"):
            sp[(i, r)] = block_sparsity(getattr(layer, r).weight, (4, 1))
    eng = NativeEngine(plan, block=cfg.get("block"))
    ids = np.random.default_rng(1).integers(1000, cfg["vocab_size"], size=(1, 128)).astype(np.int64)
    return (lambda: eng.run(ids, np.ones_like(ids))), sp


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cost-file", required=True, help="hf-fast profile of MiniLM-L6's dims, 4x1, b1 s128, 1 thread")
    ap.add_argument("--seconds", type=float, default=75.0, help="interleaved timing run, seconds")
    ap.add_argument("--artifact", default=None, help="also a trained MiniLM-L6 int8 artifact (4x1) in the engine")
    ap.add_argument("--json", default=None, help="write the figures here")
    a = ap.parse_args(argv)

    from latency_target import interleaved

    from hf_fast import native
    from hf_fast.cost_curves import CostCurves
    from hf_fast.profile import engine_runner, synthetic_plan

    dims = (384, 12, 1536, 6)
    cc = CostCurves.load(a.cost_file)
    cc.check_model(*dims, "4x1")
    b, s = cc.target_shape
    sps = masks()
    runners = {k: engine_runner(synthetic_plan(*dims, max_pos=512, block="4x1", sparsity=sp, seed=1), "4x1", b, s,
                                seed=1) for k, sp in sps.items()}
    if a.artifact:
        runners["artifact"], sps["artifact"] = artifact_engine(a.artifact)
    with native.num_threads(1):
        t = interleaved(runners, a.seconds, warm_calls=3)
    rows = {}
    for k, sp in sps.items():
        pred, meas = cc.predict_ms(*dims, "4x1", sp), t[k]["cpu_ms"]
        rows[k] = {"predicted_ms": pred, "measured_ms": meas, "measured_over_predicted": meas / pred,
                   "rounds": t[k]["rounds"]}
        print(f"{k:22s} predicted {pred:7.3f} ms  measured {meas:7.3f} ms  measured/predicted {meas / pred:.3f}")
    ratios = [r["measured_over_predicted"] for k, r in rows.items() if k != "dense"]
    spread = max(ratios) / min(ratios) - 1
    print(f"sparse masks: measured/predicted {min(ratios):.3f}..{max(ratios):.3f}, spread {spread:.1%}; "
          f"{next(iter(t.values()))['rounds']} rounds")
    if a.json:
        Path(a.json).write_text(json.dumps({"cost_file": a.cost_file, "rows": rows,
                                            "load_average": list(os.getloadavg())}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
