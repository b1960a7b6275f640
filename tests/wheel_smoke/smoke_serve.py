"""`make wheel-smoke`, step 2, in a venv holding the wheel with its runtime dependencies only (no torch, accelerate,
datasets or optimum), run from a temporary folder with no compiler on PATH: serve the artifact smoke_export.py wrote.
The native logits must equal the exporting venv's bit for bit; the second load must come from the packed-weight
cache; the training / export entry points must say which extra to install.

    python smoke_serve.py ARTIFACT_DIR
"""
import os
import subprocess
import sys
import sysconfig
import tempfile
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
SENTENCES = ["a gripping, beautifully acted film", "the plot is thin and the jokes fall flat",
             "an unexpected delight from start to finish", "tedious, overlong and badly edited",
             "the cast is terrific", "i wanted my two hours back", "a warm and funny story", "dull"]


def main(art: Path) -> int:
    import importlib.util

    for mod in ("torch", "accelerate", "datasets", "optimum"):
        assert importlib.util.find_spec(mod) is None, f"{mod} is installed in the runtime-only venv"
    try:
        import torch  # noqa: F401  (must fail)
    except ImportError:
        pass
    else:
        raise AssertionError("import torch succeeded in the runtime-only venv")

    import numpy as np
    from transformers import AutoTokenizer

    import hf_fast
    from hf_fast.runtime import FastModelForSequenceClassification

    f = Path(hf_fast.__file__).resolve()
    assert Path(sysconfig.get_paths()["purelib"]).resolve() in f.parents, f"hf_fast imported from {f}"
    print(f"hf_fast from {f.parent}; native_info: isa={hf_fast.native_info()['isa']}")

    os.environ["HF_FAST_CACHE_DIR"] = tempfile.mkdtemp(prefix="hf_fast_smoke_cache_")
    tok = AutoTokenizer.from_pretrained(str(art))
    enc = tok(SENTENCES, padding=True, return_tensors="np")
    expected = np.load(art / "expected.npy", allow_pickle=False)
    states = []
    for _ in range(2):
        model = FastModelForSequenceClassification.from_pretrained(art)
        out = model(**enc)
        assert isinstance(out.logits, np.ndarray), type(out.logits)  # numpy outputs without torch
        assert np.array_equal(out.logits, expected), "native logits differ from the exporting venv's"
        states.append(model.backend.pack_cache)
    assert states == ["miss", "hit"], states
    print(f"served {len(SENTENCES)} sentences without torch, bit-exact; pack cache {states}")

    for call, what in ((lambda: hf_fast.export(None, None, "x"), "hf_fast.export"),
                       (lambda: hf_fast.FastTrainer, "hf_fast.FastTrainer")):
        try:
            call()
        except ImportError as exc:
            assert "hf-fast[train]" in str(exc) and what in str(exc), exc
        else:
            raise AssertionError(f"{what} did not raise ImportError without torch")
    try:
        hf_fast.pipeline("text-classification", model=str(art))
    except ImportError as exc:
        assert "torch" in str(exc), exc
    cli = Path(sys.executable).parent / "hf-fast"
    r = subprocess.run([str(cli), "info", "--json"], capture_output=True, text=True, check=True)
    assert '"isa"' in r.stdout, r.stdout
    r = subprocess.run([str(cli), "bench", str(art), "-b", "1", "-s", "16", "-n", "3", "--warmup", "1", "-q"],
                       capture_output=True, text=True, check=True)
    assert "no PyTorch column" in r.stdout and "native" in r.stdout and "onnxruntime" in r.stdout, r.stdout
    r = subprocess.run([str(cli), "export", "-m", str(art), "-o", str(art.parent / "x"), "--calibration",
                        str(art / "config.json")], capture_output=True, text=True)
    assert r.returncode == 1 and "hf-fast[train]" in r.stderr, (r.returncode, r.stderr)
    print("smoke_serve: ok")
    return 0


if __name__ == "__main__":
    sys.exit(main(Path(sys.argv[1]).resolve()))
