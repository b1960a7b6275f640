"""Which attention arithmetic is close enough to fp32 to be the default? A PyTorch simulation (fake quantization of
q.k^T and p.v only; every Linear stays fp32, so the figures isolate the attention's own error) of the candidate
schemes on real checkpoints:

  static      today's opt-in int8 attention: per-tensor uint8 QDQ (ONNX Runtime MinMax: asymmetric, range holding 0)
              on q, k, p and v, scales calibrated per layer on --calib rows
  dyn8        q and k int8 per token per head (symmetric, max|x| / 127 over the head's dims), v int8 per channel
              (over the sequence's real tokens), p = exp(s - rowmax) as uint8 (x 255, so the row's largest is 255),
              normalised by the sum of the rounded values
  dyn8-p16    dyn8 with p as int16 (x 32767) and v int16 per channel (vpdpwssd)
  dyn8-p16v8  dyn8 with p as int16 and v int8 per channel (widened to int16)
  dyn8-p16v8-c  dyn8-p16v8 on k and v centred per channel first (their mean over the real keys subtracted: q.mean(k)
              is the same for every key of a row, so softmax drops it; sum(p) = 1 adds mean(v) back exactly)
  qk8         only q.k^T as dyn8 (p.v fp32)        pv8   only p.v as dyn8 (q.k^T fp32)
  qk8-c       qk8 with k centred
  bf16        q, k, v and p rounded to bf16 (the engine's attention="bf16"; its fp32 sums ignored)

  layers  relative Frobenius error of every layer's attention output (the same fp32 q, k, v into each scheme; real
          tokens only) on --rows SQuAD dev features and rt-polarity sentences
  rt      rt-polarity (2,000 held-out sentences): argmax agreement of each scheme with PyTorch fp32
  squad   SQuAD v1.1 dev (first --eval-articles articles): EM / F1 per scheme, F1 paired against fp32 attention,
          same answers as fp32 attention

    python benchmarks/attention_schemes.py layers --qa /path/teacher --rt /path/rt_ckpt
    python benchmarks/attention_schemes.py rt --rt /path/rt_ckpt
    python benchmarks/attention_schemes.py squad --qa teacher=/path/teacher --eval-articles 3
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

SCHEMES = ("static", "dyn8", "dyn8-p16", "dyn8-p16v8", "dyn8-p16v8-c", "qk8", "qk8-c", "pv8", "bf16")


def log(msg):
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


# ---- fake quantization ----

def q_sym(x, bits, dim):
    """symmetric per-slice fake quantization: scale = max|x| / (2^(bits-1) - 1) over `dim`"""
    import torch

    qmax = 2 ** (bits - 1) - 1
    s = x.abs().amax(dim=dim, keepdim=True).clamp_min(1e-30) / qmax
    return torch.round(x / s).clamp(-qmax, qmax) * s


def q_u8_static(x, lo, hi):
    """ONNX Runtime's uint8 QDQ with a MinMax range (widened to hold 0)"""
    import torch

    lo, hi = min(lo, 0.0), max(hi, 0.0)
    s = max(hi - lo, 1e-30) / 255.0
    zp = round(-lo / s)
    return (torch.round(x / s) + zp).clamp(0, 255).sub(zp) * s


def bf16(x):
    import torch

    return x.to(torch.bfloat16).to(torch.float32)


class Sim:
    """The attention function: `scheme` None = fp32; `calib` collects per-layer min/max of q, k, p, v."""

    def __init__(self):
        self.scheme, self.ranges, self.calib, self.probe = None, {}, False, None

    def __call__(self, module, query, key, value, attention_mask, scaling=None, dropout=0.0, **kw):
        import torch

        scaling = query.size(-1) ** -0.5 if scaling is None else scaling
        # additive mask [b, 1, q, k]: the keys each sequence attends to (for v's per-channel range)
        real = (attention_mask[:, :, :1, :] > -1).transpose(-1, -2).to(value.dtype) if attention_mask is not None \
            else torch.ones_like(value[..., :1])
        if self.calib:
            self._record(module.layer_idx, query, key, value, attention_mask, scaling)
        if self.probe is not None:  # the per-layer error of every scheme on these fp32 inputs
            ref = self._attend(None, module.layer_idx, query, key, value, attention_mask, scaling, real)
            for sch in self.probe["schemes"]:
                out = self._attend(sch, module.layer_idx, query, key, value, attention_mask, scaling, real)
                m = real.squeeze(-1).unsqueeze(-1)  # [b, 1, k, 1] -> over query rows (= real tokens)
                num = ((out - ref) ** 2 * m).sum().item()
                den = (ref ** 2 * m).sum().item()
                acc = self.probe["err"].setdefault((sch, module.layer_idx), [0.0, 0.0])
                acc[0] += num
                acc[1] += den
            out = ref
        else:
            out = self._attend(self.scheme, module.layer_idx, query, key, value, attention_mask, scaling, real)
        return out.transpose(1, 2).contiguous(), None

    def _record(self, li, q, k, v, mask, scaling):
        import torch

        s = torch.matmul(q, k.transpose(2, 3)) * scaling
        if mask is not None:
            s = s + mask
        p = torch.softmax(s, -1)
        for name, t in (("q", q), ("k", k), ("v", v), ("p", p)):
            lo, hi = self.ranges.get((li, name), (0.0, 0.0))
            self.ranges[(li, name)] = (min(lo, t.min().item()), max(hi, t.max().item()))

    def _attend(self, sch, li, q, k, v, mask, scaling, real):
        import torch

        dyn_qk = sch in ("dyn8", "dyn8-p16", "dyn8-p16v8", "dyn8-p16v8-c", "qk8", "qk8-c")
        dyn_pv = sch in ("dyn8", "dyn8-p16", "dyn8-p16v8", "dyn8-p16v8-c", "pv8")
        centre = sch in ("dyn8-p16v8-c", "qk8-c")
        v_mean = 0.0
        if centre:  # per-channel means over the real keys
            n = real.sum(-2, keepdim=True).clamp_min(1)
            k = k - (k * real).sum(-2, keepdim=True) / n
            if dyn_pv:
                v_mean = (v * real).sum(-2, keepdim=True) / n
                v = v - v_mean
        if sch == "static":
            r = self.ranges
            q, k = q_u8_static(q, *r[(li, "q")]), q_u8_static(k, *r[(li, "k")])
            v = q_u8_static(v, *r[(li, "v")])
        elif sch == "bf16":
            q, k, v = bf16(q), bf16(k), bf16(v)
        elif dyn_qk:
            q, k = q_sym(q, 8, -1), q_sym(k, 8, -1)
        s = torch.matmul(q, k.transpose(2, 3)) * scaling
        if mask is not None:
            s = s + mask
        if sch == "static":
            p = q_u8_static(torch.softmax(s, -1), *self.ranges[(li, "p")])
            return torch.matmul(p, v)
        if sch == "bf16":
            p = bf16(torch.softmax(s, -1))
            return torch.matmul(p, v)
        if not dyn_pv:
            return torch.matmul(torch.softmax(s, -1), v)
        e = torch.exp(s - s.amax(-1, keepdim=True))
        pbits = 16 if sch in ("dyn8-p16", "dyn8-p16v8", "dyn8-p16v8-c") else 8
        qmax = 32767.0 if pbits == 16 else 255.0
        e = torch.round(e * qmax)  # the row's largest probability -> qmax
        vbits = 16 if sch == "dyn8-p16" else 8
        # v per channel over the real keys only (padding's v never meets a nonzero probability)
        vmax = 2 ** (vbits - 1) - 1
        sv = (v.abs() * real).amax(-2, keepdim=True).clamp_min(1e-30) / vmax
        v = torch.round(v / sv).clamp(-vmax, vmax) * sv
        return torch.matmul(e, v) / e.sum(-1, keepdim=True) + v_mean


def install(sim):
    from transformers.models.bert import modeling_bert

    modeling_bert.eager_attention_forward = sim  # looked up at call time for attn_implementation="eager"


# ---- runs ----

def pad_rows(rows, cols):
    """rows of token lists -> right-padded int64 arrays"""
    L = max(len(r[cols[0]]) for r in rows)
    return {c: np.asarray([list(r[c]) + [0] * (L - len(r[c])) for r in rows], np.int64) for c in cols}


def rt_data(mdir):
    from train_rt_polarity import held_out_set

    r, tok, _, train_ds, cols, ev, labels = held_out_set(mdir, 1)
    from transformers import AutoModelForSequenceClassification

    model = AutoModelForSequenceClassification.from_pretrained(mdir, attn_implementation="eager").eval()
    calib = pad_rows([{c: train_ds[i][c] for c in cols} for i in range(min(256, len(train_ds)))], cols)
    return model, ev, labels, calib


def logits_of(model, feeds, batch=64, qa=False):
    import torch

    n = len(next(iter(feeds.values())))
    out = []
    with torch.no_grad():
        for i in range(0, n, batch):
            sub = {c: torch.from_numpy(v[i:i + batch]) for c, v in feeds.items()}
            if "attention_mask" in sub:  # trim the batch to its longest real row
                L = int(sub["attention_mask"].sum(1).max())
                sub = {c: t[:, :L] for c, t in sub.items()}
            o = model(**sub)
            if qa:
                out.append(np.stack([o.start_logits.numpy(), o.end_logits.numpy()], -1))
            else:
                out.append(o.logits.numpy())
    if qa:  # pad back to a common length
        L = max(x.shape[1] for x in out)
        out = [np.pad(x, ((0, 0), (0, L - x.shape[1]), (0, 0)), constant_values=-1e4) for x in out]
    return np.concatenate(out)


def calibrate(sim, model, calib, qa=False):
    sim.calib, sim.scheme = True, None
    logits_of(model, calib, batch=16, qa=qa)
    sim.calib = False


def squad_data(mdir, eval_articles, ncal):
    from transformers import AutoModelForQuestionAnswering, AutoTokenizer

    from hf_fast.training.qa_data import feature_arrays, squad_datasets
    from hf_fast.training.recipe import load_recipe

    r = load_recipe(str(REPO / "recipes" / "minilm_squad_part.yaml"), base_dir=REPO)
    tok = AutoTokenizer.from_pretrained(mdir)
    _, train_ds, ev_ex, eval_ds = squad_datasets(r.data, tok, eval_articles=eval_articles, pad_train=False)
    arr = feature_arrays(eval_ds)
    cols = [c for c in ("input_ids", "attention_mask", "token_type_ids") if c in train_ds.column_names]
    idx = np.random.default_rng(0).choice(len(train_ds), size=min(ncal, len(train_ds)), replace=False)
    calib = pad_rows([{c: train_ds[int(i)][c] for c in cols} for i in idx], cols)
    model = AutoModelForQuestionAnswering.from_pretrained(mdir, attn_implementation="eager").eval()
    return model, ev_ex, eval_ds, arr, calib


def cmd_layers(a):
    import torch

    torch.set_num_threads(a.threads)
    sim = Sim()
    install(sim)
    res = {}
    sets = []
    for spec in a.qa:
        name, _, mdir = spec.partition("=")
        model, _, _, arr, calib = squad_data(mdir, 1, a.calib)
        sets.append((f"squad {name}", model, {k: v[:a.rows] for k, v in arr.items()}, calib, True))
    if a.rt:
        model, ev, _, calib = rt_data(a.rt)
        sets.append(("rt-polarity", model, {k: v[:a.rows * 8] for k, v in ev.items()}, calib, False))
    for name, model, feeds, calib, qa in sets:
        calibrate(sim, model, calib, qa)
        sim.probe = {"schemes": a.schemes, "err": {}}
        logits_of(model, feeds, batch=8, qa=qa)
        err = {f"{s} L{li}": (n / d) ** 0.5 for (s, li), (n, d) in sim.probe["err"].items()}
        sim.probe = None
        res[name] = err
        nl = model.config.num_hidden_layers
        print(f"\n{name}: relative error of each layer's attention output (fp32 inputs, real tokens)\n| scheme | "
              + " | ".join(f"L{i}" for i in range(nl)) + " |\n" + "|---" * (nl + 1) + "|")
        for s in a.schemes:
            print(f"| {s} | " + " | ".join(f"{100 * err[f'{s} L{i}']:.3f}%" for i in range(nl)) + " |")
    return res


def cmd_rt(a):
    import torch

    torch.set_num_threads(a.threads)
    sim = Sim()
    install(sim)
    model, ev, labels, calib = rt_data(a.rt)
    calibrate(sim, model, calib)
    sim.scheme = None
    ref = logits_of(model, ev)
    res = {"sentences": len(labels), "fp32": {"accuracy": float((ref.argmax(-1) == labels).mean())}}
    for s in a.schemes:
        sim.scheme = s
        lg = logits_of(model, ev)
        res[s] = {"accuracy": float((lg.argmax(-1) == labels).mean()),
                  "agreement_with_fp32": float((lg.argmax(-1) == ref.argmax(-1)).mean()),
                  "max_logit_diff": float(np.abs(lg - ref).max())}
        log(f"rt {s}: {res[s]}")
    print(f"\nrt-polarity, {len(labels)} sentences, PyTorch (Linears fp32), fp32 attention accuracy "
          f"{100 * res['fp32']['accuracy']:.2f}%\n| scheme | accuracy | argmax = fp32 attention | max logit diff |\n"
          "|---|---|---|---|")
    for s in a.schemes:
        x = res[s]
        print(f"| {s} | {100 * x['accuracy']:.2f}% | {100 * x['agreement_with_fp32']:.2f}% | "
              f"{x['max_logit_diff']:.4f} |")
    return res


def cmd_squad(a):
    import torch

    from hf_fast.training.metrics import paired_difference, squad_metric, squad_scores
    from hf_fast.training.qa_data import (
        answer_agreement,
        postprocess_qa_predictions,
        squad_predictions_and_references,
    )

    torch.set_num_threads(a.threads)
    sim = Sim()
    install(sim)
    res = {}
    for spec in a.qa:
        name, _, mdir = spec.partition("=")
        model, ev_ex, eval_ds, arr, calib = squad_data(mdir, a.eval_articles, a.calib)
        log(f"{name}: {len(ev_ex)} questions, {len(eval_ds)} features")
        if "static" in a.schemes:
            calibrate(sim, model, calib, qa=True)
        order = np.argsort(-arr["attention_mask"].sum(1), kind="stable")  # similar lengths per batch
        inv = np.argsort(order)
        feeds = {k: v[order] for k, v in arr.items()}
        preds, per_q, met = {}, {}, {}
        for s in (None, *a.schemes):
            sim.scheme = s
            t = time.perf_counter()
            lg = logits_of(model, feeds, batch=16, qa=True)[inv]
            L = arr["attention_mask"].shape[1]
            lg = np.pad(lg, ((0, 0), (0, L - lg.shape[1]), (0, 0)), constant_values=-1e4)
            key = s or "fp32"
            preds[key] = postprocess_qa_predictions(ev_ex, eval_ds, lg[..., 0], lg[..., 1], n_best=20,
                                                    max_answer_length=30)
            pr = squad_predictions_and_references(ev_ex, preds[key])
            per_q[key] = {k: f for k, (_, f) in squad_scores(*pr).items()}
            met[key] = squad_metric(*pr)
            log(f"{name} {key}: EM {met[key]['exact_match']:.2f} F1 {met[key]['f1']:.2f} "
                f"({time.perf_counter() - t:.0f} s)")
        r = {"questions": len(ev_ex), "features": len(eval_ds), "metrics": met, "paired_f1_vs_fp32": {},
             "same_answers_as_fp32": {}}
        for s in a.schemes:
            m, se = paired_difference(per_q[s], per_q["fp32"])
            r["paired_f1_vs_fp32"][s] = [100 * m, 100 * se]
            r["same_answers_as_fp32"][s] = 100 * answer_agreement(preds[s], preds["fp32"])
        res[name] = r
        print(f"\nSQuAD v1.1 dev, {name}, {len(ev_ex)} questions, PyTorch (Linears fp32)\n"
              "| attention | EM | F1 | F1 - fp32 attention (paired) | same answers as fp32 attention |\n"
              f"|---|---|---|---|---|\n| fp32 | {met['fp32']['exact_match']:.2f} | {met['fp32']['f1']:.2f} | | |")
        for s in a.schemes:
            m, se = r["paired_f1_vs_fp32"][s]
            print(f"| {s} | {met[s]['exact_match']:.2f} | {met[s]['f1']:.2f} | {m:+.2f} +- {se:.2f} | "
                  f"{r['same_answers_as_fp32'][s]:.2f}% |")
    return res


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("layers")
    p.add_argument("--qa", nargs="*", default=[], help="NAME=DIR of SQuAD checkpoints")
    p.add_argument("--rt", default=None, help="an rt-polarity classifier checkpoint")
    p.add_argument("--rows", type=int, default=32, help="SQuAD features (rt: 8x as many sentences)")
    p = sub.add_parser("rt")
    p.add_argument("--rt", required=True)
    p = sub.add_parser("squad")
    p.add_argument("--qa", nargs="+", required=True, help="NAME=DIR of SQuAD checkpoints")
    p.add_argument("--eval-articles", type=int, default=3)
    for p in sub.choices.values():
        p.add_argument("--schemes", nargs="+", default=list(SCHEMES), choices=SCHEMES)
        p.add_argument("--calib", type=int, default=128, help="calibration rows of the static scheme")
        p.add_argument("--threads", type=int, default=1)
        p.add_argument("--json", default=None)
    a = ap.parse_args(argv)
    res = {"layers": cmd_layers, "rt": cmd_rt, "squad": cmd_squad}[a.cmd](a)
    res = {"command": " ".join(["python"] + sys.argv), a.cmd: res}
    if a.json:
        Path(a.json).write_text(json.dumps(res, indent=2, default=float))
    return res


if __name__ == "__main__":
    main()
