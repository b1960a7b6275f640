"""Where does int8 lose agreement with fp32? Ablations of the exporter's static QDQ int8 on a fine-tuned classifier.

Each variant quantizes the model's fp32 ONNX graph (hf_fast.export, keep_fp32) differently and reports, on the 2,000
rt-polarity eval sentences, argmax agreement with PyTorch fp32 and the max / mean |logit difference| (ONNX Runtime,
1 thread). Variants (positional, any number):

  all                 every encoder Linear int8 (the exporter's default; dedicated Q/DQ pairs, fp32 residuals)
  no_<g>              all but group g fp32     (g: q k v ao ffn1 ffn2)
  noffn2_<L>          all but layer L's FFN-out fp32
  mse                 per-tensor ranges chosen to minimise the Linear output MSE on calibration data (grid search)
  smooth_<a>[_<kind>...]  SmoothQuant: x / s into the Linear, s * W, s = max|x|^a / max|W|^(1-a) per input channel,
                      on the inputs whose name contains a kind (LayerNorm, act_fn, Reshape_3; default LayerNorm act_fn)
  margins             the fp32 logit margins of the sentences `all` flips

Run:
  python benchmarks/quant_ablation.py --model benchmarks/out/rt_full/teacher/final all no_ffn2 mse smooth_0.7_LayerNorm
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np

os.environ.setdefault("HF_HUB_OFFLINE", "1")
REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

GROUPS = {"q": "/query/", "k": "/key/", "v": "/value/", "ao": "/attention/output/", "ffn1": "/intermediate/",
          "ffn2": "/output/dense"}


def in_group(node: str, g: str) -> bool:
    if g == "ffn2":
        return "/output/dense" in node and "/attention/" not in node
    return GROUPS[g] in node


def fake_quant(x, lo, hi):
    scale = (hi - lo) / 255.0
    zp = np.round(-lo / scale)
    return (np.clip(np.round(x / scale) + zp, 0, 255) - zp) * scale


class Study:
    def __init__(self, model_dir: str, data: Path, work: Path, threads: int = 1, calibration: int = 256):
        import onnx
        import torch
        from transformers import AutoModelForSequenceClassification, AutoTokenizer

        from hf_fast.export import export, quantize
        from hf_fast.export.calibration import build_feeds
        from hf_fast.training.data import read_rt_polarity

        torch.set_num_threads(threads)
        self.threads, self.work = threads, work
        work.mkdir(parents=True, exist_ok=True)
        tok = AutoTokenizer.from_pretrained(model_dir)
        model = AutoModelForSequenceClassification.from_pretrained(model_dir).eval()
        tr, ev = read_rt_polarity(data)
        enc = tok(ev["text"], truncation=True, max_length=64, padding="max_length", return_tensors="np")
        self.eval_feeds = {k: enc[k].astype(np.int64) for k in ("input_ids", "attention_mask", "token_type_ids")}
        with torch.no_grad():
            self.ref = np.concatenate([model(**{k: torch.from_numpy(v[i:i + 200]) for k, v in self.eval_feeds.items()})
                                       .logits.numpy() for i in range(0, len(ev["text"]), 200)])
        step = max(1, len(tr["text"]) // calibration)  # spread over both classes (the train file is neg then pos)
        calib = [tr["text"][i] for i in range(0, len(tr["text"]), step)][:calibration]
        art = work / "artifact"
        export(model, tok, art, calibration_dataset=calib, keep_fp32=True, progress=False, max_length=64,
               use_qat_ranges=False)
        self.fp32 = str(art / "model_fp32.onnx")
        self.feeds = build_feeds(calib, tok, "text-classification", ["input_ids", "attention_mask", "token_type_ids"],
                                 max_length=64)
        self.nodes = quantize.encoder_linear_matmuls(onnx.load(self.fp32))
        self._stats = None

    def run(self, path: str) -> np.ndarray:
        import onnxruntime as ort

        so = ort.SessionOptions()
        so.intra_op_num_threads = self.threads
        s = ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])
        n = len(self.ref)
        return np.concatenate([s.run(None, {k: v[i:i + 200] for k, v in self.eval_feeds.items()})[0]
                               for i in range(0, n, 200)])

    def report(self, name: str, logits: np.ndarray) -> dict:
        agree = float((logits.argmax(1) == self.ref.argmax(1)).mean())
        d = np.abs(logits - self.ref)
        row = {"variant": name, "agreement": agree, "max_abs_diff": float(d.max()), "mean_abs_diff": float(d.mean())}
        print(f"| {name} | {agree * 100:.2f}% | {d.max():.3f} | {d.mean():.4f} |", flush=True)
        return row

    def quantized(self, name: str, nodes, fp32: str = None, **kw) -> np.ndarray:
        from hf_fast.export import quantize

        out = str(self.work / f"{name}.onnx")
        quantize.quantize_qdq(fp32 or self.fp32, out, self.feeds, nodes=nodes, progress=False, **kw)
        return self.run(out)

    def stats(self):
        """{Linear input tensor: (calibration activations [rows, K], [weights [K, N] of its consumers])}."""
        if self._stats is None:
            import onnx
            import onnxruntime as ort
            from onnx import numpy_helper

            m = onnx.load(self.fp32)
            inits = {i.name: i for i in m.graph.initializer}
            acts = {}
            for n in m.graph.node:
                if n.name in self.nodes:
                    acts.setdefault(n.input[0], []).append(numpy_helper.to_array(inits[n.input[1]]))
            for t in acts:
                m.graph.output.append(onnx.helper.make_tensor_value_info(t, onnx.TensorProto.FLOAT, None))
            so = ort.SessionOptions()
            so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
            s = ort.InferenceSession(m.SerializeToString(), so, providers=["CPUExecutionProvider"])
            names = list(acts)
            data = {t: [] for t in names}
            for f in self.feeds:
                for t, o in zip(names, s.run(names, f), strict=False):
                    data[t].append(o.reshape(-1, o.shape[-1]))
            self._stats = {t: (np.concatenate(v), acts[t]) for t, v in data.items()}
        return self._stats

    def mse_ranges(self, rows: int = 2048, grid=None):
        """Per tensor: clip max then min by a factor of the calibrated range, keeping the lowest output MSE."""
        grid = np.linspace(0.3, 1.0, 15) if grid is None else grid
        rng = np.random.default_rng(0)
        out = {}
        for t, (x, ws) in self.stats().items():
            lo0, hi0 = min(float(x.min()), 0.0), max(float(x.max()), 0.0)
            xs = x[rng.choice(len(x), min(rows, len(x)), replace=False)]
            w = np.concatenate(ws, axis=1)
            ref = xs @ w

            def err(lo, hi, xs=xs, w=w, ref=ref):
                return float(((fake_quant(xs, lo, hi) @ w - ref) ** 2).mean())

            best = (err(lo0, hi0), 1.0, 1.0)
            for a in grid:
                e = err(lo0, hi0 * a)
                best = (e, a, 1.0) if e < best[0] else best
            for b in grid:
                e = err(lo0 * b, hi0 * best[1])
                best = (e, best[1], b) if e < best[0] else best
            out[t] = (lo0 * best[2], hi0 * best[1])
        return out

    def smoothed(self, name: str, alpha: float, kinds) -> str:
        """The fp32 graph smoothed by the exporter's hf_fast.export.smooth, only on the Linears whose input
        tensor name contains one of `kinds`."""
        from hf_fast.export import smooth

        consumers = self.consumers()
        path = str(self.work / f"{name}_fp32.onnx")
        smooth.smooth_graph(self.fp32, path, self.feeds, alpha,
                            nodes=[n for n in self.nodes if any(k in consumers[n] for k in kinds)])
        return path

    def consumers(self):
        """{quantized MatMul: its activation input tensor}."""
        import onnx

        return {n.name: n.input[0] for n in onnx.load(self.fp32).graph.node if n.name in self.nodes}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("variants", nargs="*", default=["all"])
    ap.add_argument("--model", default=str(REPO / "benchmarks/out/rt_full/teacher/final"))
    ap.add_argument("--data", default=str(REPO.parent / "shared/data/rt-polarity"))
    ap.add_argument("--work", default=str(REPO / "benchmarks/out/quant_ablation"))
    ap.add_argument("--threads", type=int, default=1)
    a = ap.parse_args(argv)
    t0 = time.time()
    st = Study(a.model, Path(a.data), Path(a.work), a.threads)
    print(f"model {a.model}; fp32 ONNX vs PyTorch agreement "
          f"{(st.run(st.fp32).argmax(1) == st.ref.argmax(1)).mean() * 100:.2f}%\n")
    print("| variant | agreement with fp32 | max abs logit diff | mean abs logit diff |\n|---|---|---|---|")
    rows = []
    for v in a.variants:
        if v == "all":
            rows.append(st.report(v, st.quantized(v, st.nodes)))
        elif v.startswith("no_"):
            rows.append(st.report(v, st.quantized(v, [n for n in st.nodes if not in_group(n, v[3:])])))
        elif v.startswith("noffn2_"):
            layer = f"layer.{int(v.split('_')[1])}/"
            keep = [n for n in st.nodes if not (layer in n and in_group(n, "ffn2"))]
            rows.append(st.report(v, st.quantized(v, keep)))
        elif v == "mse":
            rows.append(st.report(v, st.quantized(v, st.nodes, tensor_ranges=st.mse_ranges())))
        elif v.startswith("smooth_"):
            parts = v.split("_")
            path = st.smoothed(v, float(parts[1]), tuple(parts[2:]) or ("LayerNorm", "act_fn"))
            rows.append(st.report(v, st.quantized(v, st.nodes, fp32=path)))
        elif v == "margins":
            lg = st.quantized("all", st.nodes)
            m = np.abs(st.ref[:, 0] - st.ref[:, 1])
            flip = lg.argmax(1) != st.ref.argmax(1)
            d = (lg[:, 0] - lg[:, 1]) - (st.ref[:, 0] - st.ref[:, 1])
            print(f"\n{flip.sum()} flips; their fp32 margins: {[round(float(x), 2) for x in np.sort(m[flip])]}")
            print(f"margin noise (int8 - fp32): std {d.std():.3f}, |.| median {np.median(np.abs(d)):.3f}; "
                  f"sentences with fp32 margin < 0.1 / 0.3 / 0.5: "
                  f"{(m < .1).sum()} / {(m < .3).sum()} / {(m < .5).sum()}")
        else:
            raise SystemExit(f"unknown variant {v!r}")
    print(f"\n{time.time() - t0:.0f} s")
    return rows


if __name__ == "__main__":
    main()
