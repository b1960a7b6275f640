"""Alternated A/B of native builds on one artifact: the "A/B" figures of benchmarks/HISTORY.md (sessions 6-8).

Each build is a folder holding a `_native*.so` (copy hf_fast/_native*.so there after `make install`), or a whole
checkout with its native module built in place (``git worktree add DIR REV``, then ``setup.py build_ext --inplace``
in DIR): a checkout's cells run its own Python and library, for builds whose C interface differs. Every cell runs in
a fresh process that imports that build (HF_FAST_NATIVE_DIR, or PYTHONPATH for a checkout), loads the artifact,
makes 3 warm-up calls and times back-to-back calls on random token ids for `--seconds`: its median. Builds alternate
within each round, and the report is the median over rounds of those medians (the VM's speed drifts over minutes;
one pass can mislead).

    python benchmarks/ab_builds.py benchmarks/out/engine_models_v5/distilbert_s80_qa old=/tmp/so_old new=/tmp/so_new \\
        --shape 1x128 --threads 1 --seconds 1.5 --rounds 5
"""
from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from thread_scaling import cell  # noqa: E402  (one timing procedure for both scripts)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("model", help="fast artifact directory")
    ap.add_argument("builds", nargs="*", help="NAME=DIR, DIR holding a _native*.so")
    ap.add_argument("--shape", default="1x128", help="batch x sequence")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--seconds", type=float, default=1.5)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--cell", action="store_true", help=argparse.SUPPRESS)  # internal: one timing in this process
    a = ap.parse_args(argv)
    batch, seq = (int(v) for v in a.shape.split("x"))
    if a.cell:
        print(cell(a.model, "native", a.threads, batch, seq, a.seconds))
        return
    builds = dict(b.split("=", 1) for b in a.builds)
    if len(builds) < 2:
        raise SystemExit("give at least two builds as NAME=DIR")
    times = {name: [] for name in builds}
    for _r in range(a.rounds):
        for name, d in builds.items():
            script, env = __file__, dict(os.environ, HF_FAST_NATIVE_DIR=d)
            if (Path(d) / "hf_fast" / "__init__.py").is_file():  # a whole checkout: its own Python and native build
                script = str(Path(d) / "benchmarks" / "ab_builds.py")
                env = {k: v for k, v in os.environ.items() if k != "HF_FAST_NATIVE_DIR"}
                env["PYTHONPATH"] = d
            out = subprocess.run([sys.executable, script, a.model, "--cell", "--shape", a.shape, "--threads",
                                  str(a.threads), "--seconds", str(a.seconds)], env=env, check=True,
                                 capture_output=True, text=True).stdout
            times[name].append(float(out.strip().splitlines()[-1]))
    print(f"{a.model} {a.shape}, {a.threads} thread(s), {a.rounds} rounds x {a.seconds} s")
    for name, ts in times.items():
        every = " ".join(f"{t:.2f}" for t in ts)
        print(f"{name}: median {statistics.median(ts):.3f} ms  min {min(ts):.3f}  all {every}")


if __name__ == "__main__":
    main()
