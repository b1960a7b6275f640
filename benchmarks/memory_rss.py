"""Resident memory of one loaded artifact per runtime (issue 4): VmRSS after importing onnxruntime, torch and
hf_fast, then after loading the artifact and running batch 8 x seq 128 once. One process per runtime:

    python benchmarks/memory_rss.py benchmarks/out/engine_models_v3/distilbert_s80 native
    python benchmarks/memory_rss.py benchmarks/out/engine_models_v3/distilbert_s80 onnxruntime
"""
import resource
import sys

import numpy as np


def rss_mib() -> float:
    return int(open("/proc/self/status").read().split("VmRSS:")[1].split()[0]) / 1024


def main(art: str, backend: str) -> None:
    import onnxruntime  # noqa: F401  (same imports on both sides)
    import torch  # noqa: F401

    import hf_fast.runtime.modeling as mm

    base = rss_mib()
    fm = mm.load_fast_model(art, backend=backend, num_threads=1)
    ids = np.random.default_rng(0).integers(1000, 20000, size=(8, 128)).astype(np.int64)
    fm(input_ids=ids, attention_mask=np.ones_like(ids))
    print(f"{backend}: RSS after imports {base:.0f} MiB, after load+run {rss_mib():.0f} MiB, model "
          f"{rss_mib() - base:.0f} MiB, peak {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
