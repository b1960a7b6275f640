"""Cold start: `FastModelForSequenceClassification.from_pretrained` to the first output, each load in a fresh process.

The artifact is the 80%-sparse DistilBERT-base-shaped classifier of bench_engine.py (6 layers, hidden 768, FFN 3072,
4x1 blocks, static int8; random weights: load time does not depend on the values), built once into
benchmarks/out/cold_start/ and reused. Each round, interleaved, with a fresh empty cache folder:

  uncached   HF_FAST_PACK_CACHE=0: parse model.onnx, match the encoder, pack every Linear
  first      cache on, empty: the same work plus writing the packed-weight cache (hf_fast/runtime/pack_cache.py)
  second     cache on, filled by `first`: restore the plan and packed Linears, no parse, no packing

Each child process times `import hf_fast.runtime.modeling` (import), `from_pretrained` (load; it includes the
sha256 check of model.onnx and transformers' AutoConfig, which imports torch when torch is installed) and the first
`model(**inputs)` on one 128-token sentence (first output); "engine" is the part of the load spent building the
native backend (what the cache saves). Medians over the rounds. --python runs the children in another venv (e.g. a
runtime-only install without torch, where transformers' AutoConfig does not import torch).
Writes benchmarks/out/cold_start.{json,md}. Usage:
  python benchmarks/cold_start.py                 # 5 rounds
  python benchmarks/cold_start.py --rounds 3 --threads 1
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
OUT = REPO / "benchmarks" / "out"
ARTIFACT = OUT / "cold_start" / "distilbert_s80"

CHILD = r"""
import json, sys, time
t0 = time.perf_counter()
import hf_fast.runtime.modeling as modeling
from hf_fast.runtime.modeling import FastModelForSequenceClassification
t1 = time.perf_counter()
engine = []
def timed(*a, _create=modeling.create_backend, **k):
    s = time.perf_counter()
    b = _create(*a, **k)
    engine.append(time.perf_counter() - s)
    return b
modeling.create_backend = timed
model = FastModelForSequenceClassification.from_pretrained(sys.argv[1], num_threads=int(sys.argv[2]))
t2 = time.perf_counter()
import numpy as np
ids = np.array([[101] + [2023 + (i % 500) for i in range(126)] + [102]], dtype=np.int64)
out = model(input_ids=ids, attention_mask=np.ones_like(ids))
float(out.logits[0, 0])
t3 = time.perf_counter()
print(json.dumps({"import": t1 - t0, "load": t2 - t1, "engine": engine[0], "first_output": t3 - t2,
                  "cache": model.backend.pack_cache, "torch": "torch" in sys.modules}))
"""


def build_artifact() -> Path:
    if (ARTIFACT / "fast_config.json").is_file():
        return ARTIFACT
    sys.path.insert(0, str(REPO / "benchmarks"))
    import bench_engine

    built = bench_engine.build_models([0.8], ARTIFACT.parent, calib=64)
    return built[(0.8, False)][1]


def child(python: str, artifact: Path, cache_dir: str, use_cache: bool, threads: int) -> dict:
    env = {**os.environ, "HF_FAST_CACHE_DIR": cache_dir, "HF_FAST_PACK_CACHE": "1" if use_cache else "0",
           "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "PYTHONPATH": str(REPO)}
    t0 = time.perf_counter()
    r = subprocess.run([python, "-c", CHILD, str(artifact), str(threads)], env=env, capture_output=True,
                       text=True, check=True)
    res = json.loads(r.stdout.strip().splitlines()[-1])
    res["process"] = time.perf_counter() - t0
    return res


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--python", default=sys.executable,
                    help="interpreter of the child processes, e.g. a runtime-only venv without torch")
    a = ap.parse_args(argv)
    artifact = build_artifact()
    runs: dict[str, list[dict]] = {"uncached": [], "first": [], "second": []}
    for r in range(a.rounds):
        with tempfile.TemporaryDirectory(prefix="hf_fast_cold_") as cache:
            runs["uncached"].append(child(a.python, artifact, cache, False, a.threads))
            runs["first"].append(child(a.python, artifact, cache, True, a.threads))
            runs["second"].append(child(a.python, artifact, cache, True, a.threads))
        states = {k: v[-1]["cache"] for k, v in runs.items()}
        if states != {"uncached": "off", "first": "miss", "second": "hit"}:
            raise SystemExit(f"round {r}: unexpected cache states {states}")
        print(f"round {r + 1}/{a.rounds}: " + "  ".join(f"{k} load {v[-1]['load']:.2f}s" for k, v in runs.items()),
              flush=True)
    med = {k: {m: statistics.median(x[m] for x in v) for m in ("import", "load", "engine", "first_output", "process")}
           for k, v in runs.items()}
    spread = {k: {m: (min(x[m] for x in v), max(x[m] for x in v)) for m in ("load",)} for k, v in runs.items()}
    cmd = "python benchmarks/cold_start.py " + " ".join(argv if argv is not None else sys.argv[1:])
    torch = "with torch installed" if runs["second"][-1]["torch"] else "without torch (runtime-only install)"
    machine = f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, threads={a.threads}, {torch}"
    size = (artifact / "model.onnx").stat().st_size
    lines = [f"Cold start, 80%-sparse DistilBERT-base-shaped classifier (model.onnx {size / 2**20:.0f} MiB), "
             f"medians of {a.rounds} rounds, fresh process each ({machine}). Command: `{cmd.strip()}`", "",
             "| load | import (s) | from_pretrained (s) | of which the engine (s) | first output (s) | "
             "from_pretrained + first output (s) | whole process (s) |", "|---|---|---|---|---|---|---|"]
    for k, m in med.items():
        lines.append(f"| {k} | {m['import']:.2f} | {m['load']:.2f} (min {spread[k]['load'][0]:.2f}, max "
                     f"{spread[k]['load'][1]:.2f}) | {m['engine']:.2f} | {m['first_output']:.3f} | "
                     f"{m['load'] + m['first_output']:.2f} | {m['process']:.2f} |")
    md = "\n".join(lines) + "\n"
    print(md)
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "cold_start.md").write_text(md)
    (OUT / "cold_start.json").write_text(json.dumps({"command": cmd, "machine": machine, "medians": med,
                                                     "runs": runs}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
