"""One runner interface for every embedding runtime of bench_embed.py: tokenize -> run -> pool -> normalise.

Every runtime is driven by the same ``encode`` (sentence-transformers' batching: sorted by length, longest first,
results back in input order) and the same tokenizer call, so sorting and tokenizing count alike for all of them:

  engine        hf-fast's engine on the artifact's model.onnx (static int8); pooling + L2 fused into its run
  ort-int8-dyn  ONNX Runtime, quantize_dynamic (per-channel QInt8 weights) of the fp32 export; pooling in numpy
  openvino      OpenVINO on the same model.onnx as the engine (LATENCY hint, 1 stream); pooling in numpy
  torch-fp32    the fp32 PyTorch transformer of the sentence-transformers model; pooling in numpy

``worker`` hosts one runner in its own process (bench_embed.py starts one per runtime and thread count, so thread
pools never share a process) and answers encode / time requests over a Pipe.
"""
from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np

RUNTIMES = ("engine", "ort-int8-dyn", "openvino", "torch-fp32")


class Runner:
    """One batch = tokenize -> run -> pool -> normalise. Subclasses give ``run``; ``fused`` runners return pooled
    (and, when the model says so, normalised) embeddings from ``run`` itself. ``info``: what the report should say
    about the runtime's own choices (the engine's attention precision)."""

    fused = False
    info: dict = {}

    def __init__(self, tokenizer, max_seq_length: int, pooling: dict, input_names):
        self.tokenizer, self.max_seq_length = tokenizer, int(max_seq_length)
        self.mode, self.normalize = pooling["mode"], bool(pooling["normalize"])
        self.input_names = tuple(input_names)

    def tokenize(self, texts: list[str]) -> dict[str, np.ndarray]:
        enc = self.tokenizer(list(texts), padding=True, truncation=True, max_length=self.max_seq_length,
                             return_tensors="np")
        return {k: np.asarray(enc[k], np.int64) for k in self.input_names if k in enc}

    def run(self, feeds: dict[str, np.ndarray]) -> np.ndarray:
        raise NotImplementedError

    def embed_batch(self, texts: list[str]) -> np.ndarray:
        from hf_fast.pooling import pool

        feeds = self.tokenize(texts)
        out = self.run(feeds)
        if not self.fused:
            out = pool(out, feeds["attention_mask"], self.mode, self.normalize)
        return np.asarray(out, np.float32)


def encode(runner: Runner, texts: list[str], batch_size: int) -> np.ndarray:
    """[len(texts), dim] float32 in input order; batches of ``batch_size`` over the texts sorted longest first
    (sentence-transformers' and FastSentenceTransformer's order, by characters, stable)."""
    order = np.argsort([-len(t) for t in texts], kind="stable")
    out = None
    for s in range(0, len(texts), batch_size):
        idx = order[s:s + batch_size]
        emb = runner.embed_batch([texts[i] for i in idx])
        if out is None:
            out = np.empty((len(texts), emb.shape[1]), np.float32)
        out[idx] = emb
    return out


class EngineRunner(Runner):
    fused = True

    def __init__(self, folder: Path, threads: int, attention: str | None = None, **kw):
        from hf_fast.runtime.modeling import FastModelForFeatureExtraction

        self.model = FastModelForFeatureExtraction.from_pretrained(folder, backend="native",
                                                                   output="sentence_embedding", num_threads=threads,
                                                                   attention=attention)
        # None: the task's default, "auto" (bf16 where the CPU has it and it is the faster kernel there)
        self.info = {"attention": self.model.backend.engine.attention}
        super().__init__(input_names=self.model.input_names, **kw)

    def run(self, feeds):
        return self.model.run(**feeds)["sentence_embedding"]


class OrtRunner(Runner):
    def __init__(self, onnx_path: Path, threads: int, **kw):
        import onnxruntime as ort

        so = ort.SessionOptions()
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        so.intra_op_num_threads, so.inter_op_num_threads = threads, 1
        self.sess = ort.InferenceSession(str(onnx_path), so, providers=["CPUExecutionProvider"])
        self.out_name = self.sess.get_outputs()[0].name  # last_hidden_state
        super().__init__(input_names=[i.name for i in self.sess.get_inputs()], **kw)

    def run(self, feeds):
        return self.sess.run([self.out_name], feeds)[0]


class OpenVinoRunner(Runner):
    def __init__(self, onnx_path: Path, threads: int, **kw):
        import openvino as ov

        core = ov.Core()
        cfg = {"PERFORMANCE_HINT": "LATENCY", "NUM_STREAMS": "1", "INFERENCE_NUM_THREADS": str(threads)}
        self.compiled = core.compile_model(core.read_model(str(onnx_path)), "CPU", cfg)
        self.request = self.compiled.create_infer_request()
        self.out = self.compiled.outputs[0]
        super().__init__(input_names=[i.get_any_name() for i in self.compiled.inputs], **kw)

    def run(self, feeds):
        return self.request.infer(feeds)[self.out]


class TorchRunner(Runner):
    def __init__(self, st_path: Path, threads: int, **kw):
        import torch
        from transformers import AutoModel

        torch.set_num_threads(threads)
        self.torch = torch
        self.model = AutoModel.from_pretrained(str(st_path)).eval()
        names = ["input_ids", "attention_mask"]
        if getattr(self.model.config, "type_vocab_size", 0):
            names.append("token_type_ids")
        super().__init__(input_names=names, **kw)

    def run(self, feeds):
        with self.torch.inference_mode():
            return self.model(**{k: self.torch.from_numpy(v) for k, v in feeds.items()}).last_hidden_state.numpy()


def make_runner(spec: dict) -> Runner:
    """spec: runtime, threads, path (artifact folder, ONNX file or checkpoint), max_seq_length, pooling."""
    from transformers import AutoTokenizer

    kw = {"tokenizer": AutoTokenizer.from_pretrained(str(spec["tokenizer"])),
          "max_seq_length": spec["max_seq_length"], "pooling": spec["pooling"]}
    cls = {"engine": EngineRunner, "ort-int8-dyn": OrtRunner, "openvino": OpenVinoRunner,
           "torch-fp32": TorchRunner}[spec["kind"]]
    if cls is EngineRunner:
        kw["attention"] = spec.get("attention")
    return cls(Path(spec["path"]), int(spec["threads"]), **kw)


def worker(conn, spec: dict) -> None:
    """Child process: one runner; requests ("load", name, texts), ("encode", name, batch),
    ("time", name, batch) -> (wall s, process CPU s), ("stop",)."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    try:
        runner = make_runner(spec)
        conn.send(("ready", dict(runner.info)))
    except Exception as exc:  # noqa: BLE001  (reported to the parent, which names the runtime)
        conn.send(("error", f"{type(exc).__name__}: {exc}"))
        return
    loads: dict[str, list[str]] = {}
    while True:
        msg = conn.recv()
        try:
            if msg[0] == "stop":
                break
            if msg[0] == "load":
                loads[msg[1]] = list(msg[2])
                conn.send(("ok", None))
            elif msg[0] == "encode":
                conn.send(("ok", encode(runner, loads[msg[1]], msg[2])))
            elif msg[0] == "time":
                c0, t0 = time.process_time(), time.perf_counter()
                encode(runner, loads[msg[1]], msg[2])
                conn.send(("ok", (time.perf_counter() - t0, time.process_time() - c0)))
            else:
                conn.send(("error", f"unknown request {msg[0]!r}"))
        except Exception as exc:  # noqa: BLE001  (reported to the parent)
            conn.send(("error", f"{type(exc).__name__}: {exc}"))
