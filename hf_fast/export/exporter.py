"""The exporter: a transformers encoder with a task head -> a fast artifact folder (sparse int8 ONNX + fast_config).

Orchestrates the single-job modules of this package: tasks/registry (what the family and task are), onnx_export
(PyTorch -> fp32 ONNX), calibration (samples -> feeds), smooth (SmoothQuant), quantize (static QDQ int8),
artifact (fast_config, model card, atomic save), inplace (exporting into the model's own folder).
Importing this module is cheap; torch/onnxruntime load when `export` runs.
"""
from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from hf_fast.export.artifact import FAST_CONFIG_NAME, FORMAT_VERSION, MODEL_FP32_NAME, MODEL_NAME
from hf_fast.models import generic, registry
from hf_fast.models.tasks import TASKS, normalize_task

__all__ = ["export", "load_model_for_task", "DEFAULT_SMOOTH_QUANT"]


def load_model_for_task(path: str | Path, task: str | None = None):
    """Load a local checkpoint with the transformers Auto class of `task` (inferred from config.json).

    A checkpoint without that head (e.g. a bare BertModel) gets a freshly initialised one, as transformers does.
    """
    from hf_fast._deps import require_train

    require_train("hf_fast.export.load_model_for_task", ("torch",))
    import transformers
    from transformers import AutoConfig

    from hf_fast.models.tasks import task_from_architectures

    p = Path(path)
    if not p.is_dir() or not (p / "config.json").is_file():
        raise FileNotFoundError(f"{str(p)!r} is not a local transformers checkpoint (no config.json)")
    cfg = AutoConfig.from_pretrained(str(p))
    if task is None:
        task = task_from_architectures(getattr(cfg, "architectures", None))
        if task is None:
            raise ValueError(f"cannot infer the task of {str(p)!r} (architectures={cfg.architectures}): "
                             f"pass task= / --task one of {', '.join(TASKS)}")
    task = normalize_task(task)
    auto = getattr(transformers, str(TASKS[task]["auto_class"]))
    return auto.from_pretrained(str(p)), task


def family_of(model):
    """The registry Family of the model's type, else the generic encoder view (models/generic.py): an encoder the
    engine does not run still exports, for ONNX Runtime; ValueError for a model that is no encoder (GPT-2)."""
    fam = registry.find(getattr(model.config, "model_type", None))
    return fam if fam is not None else generic.for_model(model)


def _resolve_task(model, task: str | None) -> str:
    from hf_fast.models.tasks import task_from_class_name

    from_class = task_from_class_name(type(model).__name__)
    if task is None:
        if from_class is None:
            raise ValueError(f"cannot infer the task from {type(model).__name__}: pass task= one of "
                             f"{', '.join(TASKS)} with a model that has that head (e.g. AutoModelFor...)")
        return from_class
    t = normalize_task(task)
    if from_class is not None and from_class != t:
        raise ValueError(f"task {t!r} does not match the model's head ({type(model).__name__} is {from_class!r})")
    if from_class is None:
        raise ValueError(f"{type(model).__name__} has no {t} head: load it with "
                         f"transformers.{TASKS[t]['auto_class']} (or hf_fast.export.load_model_for_task)")
    return t


def _pooling_arg(pooling, normalize) -> dict[str, Any] | None:
    """export(pooling=, normalize=) as a partial pooling record (None: nothing given)."""
    from hf_fast.pooling import POOLING_MODES

    if pooling is None and normalize is None:
        return None
    rec = dict(pooling) if isinstance(pooling, Mapping) else ({} if pooling is None else {"mode": pooling})
    if normalize is not None:
        rec["normalize"] = normalize
    if "mode" in rec and rec["mode"] not in POOLING_MODES:
        raise ValueError(f"pooling={rec['mode']!r}: choose one of {', '.join(POOLING_MODES)}")
    if "normalize" in rec and not isinstance(rec["normalize"], bool):
        raise ValueError(f"normalize must be True or False, got {rec['normalize']!r}")
    rec["source"] = rec.get("source") or "export arguments"
    return rec


def _pooling_of(model, given: dict[str, Any] | None) -> dict[str, Any]:
    """The pooling record of a feature-extraction export: the arguments over the model folder's own
    sentence-transformers files over sentence-transformers' default (mean, no normalisation)."""
    from hf_fast import pooling as pooling_mod

    src = str(getattr(model, "name_or_path", "") or getattr(model.config, "_name_or_path", "") or "")
    own = pooling_mod.from_folder(src) if src and Path(src).is_dir() else None
    rec = {**pooling_mod.DEFAULT, **(own or {})}
    if given:
        if own is not None and given.get("source") == "export arguments":
            rec["source"] = f"{own['source']}, overridden by the export arguments"
            given = {k: v for k, v in given.items() if k != "source"}
        rec.update(given)
    return pooling_mod.check_pooling(rec)


# SmoothQuant alpha of smooth_quant="auto" (hf_fast/export/smooth.py: on the fine-tuned MiniLM classifier int8 vs
# fp32 agreement 98.05% -> 99.40%; 0.7 gave 98.90%, 0.9 99.05%).
DEFAULT_SMOOTH_QUANT: float = 0.8


def export(model: Any, tokenizer: Any, out_dir: str | Path, calibration_dataset: Any = None,
           task: str | None = None, *, block: str | None = None, calibration_method: str = "minmax",
           calibration_size: int | None = None, calibration_batch_size: int = 1, max_length: int = 128,
           keep_fp32: bool = False, overwrite: bool = True, metrics: Mapping[str, Any] | None = None,
           opset: int = 17, progress: bool = True, reduce_range: bool = False,
           quantize_residuals: bool = False, use_qat_ranges: bool = True,
           smooth_quant: float | None | str = "auto", quantize_attention: bool | str = False,
           attention_tolerance: float | None = None, pooling: str | Mapping[str, Any] | None = None,
           normalize: bool | None = None) -> Path:
    """Export `model` (a transformers BERT/DistilBERT/MiniLM/RoBERTa model with a task head, a
    ``sentence_transformers.SentenceTransformer``, or the path of a local checkpoint) to a fast artifact folder
    `out_dir` and return its path.

    Args:
        tokenizer: saved next to the model and used to encode raw-text calibration samples.
        calibration_dataset: real samples for static int8 calibration (see hf_fast.export.calibration).
        task: "text-classification", "question-answering", "token-classification" or "feature-extraction"
            (alias "sentence-similarity": the bare encoder, e.g. ``AutoModel``); inferred from the model class when
            None.
        pooling, normalize (feature-extraction): how the engine turns token states into sentence embeddings,
            recorded in fast_config.json "pooling" (hf_fast/pooling.py): "mean", "cls", "max" or "mean_sqrt_len",
            and L2 normalisation. None reads them from the model's own sentence-transformers files (modules.json,
            the Pooling config, a Normalize module) or SentenceTransformer modules; without those, mean pooling and
            no normalisation (sentence-transformers' default for a plain transformers model).
        block: block shape to report sparsity in ("4x1", "1x4", ...; from the training config);
            None detects it (see artifact.sparsity_report).
        calibration_method: "minmax" (default), "percentile" or "entropy".
        calibration_size: use at most this many samples. max_length: tokenizer truncation.
        keep_fp32: also write model_fp32.onnx. metrics: accuracy/speed figures for the model card.
        overwrite: replace an existing artifact in out_dir (atomically: its model files; checkpoints, logs and other
            files there stay); False raises FileExistsError. Exporting into the folder the model was loaded from
            keeps its weights, other files and recorded metrics (hf_fast.export.inplace).
        reduce_range: 7-bit weights ([-64, 64]) for CPUs without VNNI, where ONNX Runtime's AVX2 u8 x s8
            kernel (vpmaddubsw) can saturate; costs weight precision, so off by default.
        quantize_residuals: share each activation's Q/DQ pair with the residual Add (ONNX Runtime's
            default layout), rounding the residual stream to uint8 as well; off by default (more accurate).
            The native engine reproduces either layout exactly (it reads it from the graph).
        use_qat_ranges: a model fine-tuned with ``FastConfig(quantization="qat")`` carries the activation ranges
            its fake-quant learned (``config.hf_fast["qat"]``); they replace the calibrated ranges, so the file
            computes what the model was trained to compute (the calibration set is still run, as a check).
        smooth_quant: SmoothQuant migration strength alpha in [0, 1], None (off) or "auto" (the default:
            DEFAULT_SMOOTH_QUANT, off for QAT models and with quantize_residuals): divides each int8 Linear
            input by calibrated per-channel scales (a Mul in the graph) and multiplies the weight rows by them,
            taming the outlier channels that per-tensor uint8 rounds badly (hf_fast.export.smooth). QAT ranges
            win over an explicit alpha (the model was trained on the unsmoothed scheme); an explicit alpha with
            quantize_residuals=True is refused.
        quantize_attention: also quantize the two activation x activation MatMuls of every encoder layer's
            self-attention, scores = q.k^T and context = softmax_probs.v: q, k^T, the probabilities and v each get
            a uint8 per-tensor Q/DQ pair calibrated on the same samples (the scale, mask and Softmax stay fp32,
            and the MatMul outputs are not quantized). ONNX Runtime fuses them into int8 kernels as well
            (MatMulIntegerToFloat; a few percent faster end to end), and the hf-fast engine runs the same int8
            attention (exact int32 products on VNNI / AVX2; the attention of an 80%-sparse DistilBERT at seq 384 is
            ~40% of the engine's time in fp32). It costs some accuracy (q, k, v and the probabilities
            are rounded to 256 levels per tensor), so it is off by default. With QAT ranges only the Linear inputs
            take them; the attention inputs are calibrated. Recorded in fast_config.json
            (``quantization.quantize_attention`` / ``quantization.attention``).
            "auto" quantizes it per layer: only in the layers where it moves the layer's output by at most
            `attention_tolerance` (relative Frobenius error, default attention_auto.DEFAULT_TOLERANCE), measured on
            the last quarter of the calibration batches, held back from the calibration of a probe file (so "auto"
            needs >= 2 batches); the artifact itself is then calibrated on every batch, as without "auto";
            the other layers keep fp32 attention (hf_fast.export.attention_auto). The choice is recorded in
            ``quantization.attention_per_layer`` and ``quantization.attention_selection``.
        attention_tolerance: the tolerance of quantize_attention="auto" (a number in (0, 1)); refused otherwise.
    Raises ValueError (unsupported architecture/task, empty calibration set, bad block),
    NotADirectoryError (out_dir is a file), FileExistsError, PermissionError.
    """
    from hf_fast._deps import require_train

    require_train("hf_fast.export", ("torch",))  # torch.onnx.export
    import numpy as np
    import onnx

    from hf_fast.export import artifact, attention_auto, calibration, inplace, onnx_export, quantize
    from hf_fast.runtime.graph import LogicalGraph

    # ---- validate everything cheap before doing any work
    pooling = _pooling_arg(pooling, normalize)
    from hf_fast import pooling as pooling_mod

    if pooling_mod.is_sentence_transformer(model):  # Transformer -> Pooling -> Normalize: export the encoder
        model, st_tok, st_pool = pooling_mod.unwrap_sentence_transformer(model)
        tokenizer = tokenizer if tokenizer is not None else st_tok
        pooling = {**st_pool, **(pooling or {})}
        task = "feature-extraction" if task is None else task
    if isinstance(model, (str, Path)):
        model, task = load_model_for_task(model, task)
        if tokenizer is None:
            from transformers import AutoTokenizer

            tokenizer = AutoTokenizer.from_pretrained(str(Path(str(model.name_or_path))))
    cfg = getattr(model, "config", None)
    if cfg is None or not hasattr(model, "set_attn_implementation"):
        raise ValueError(f"unsupported model object {type(model).__name__}: pass a transformers PreTrainedModel")
    family = family_of(model)
    task = _resolve_task(model, task)
    if task == "feature-extraction":
        pooling = _pooling_of(model, pooling)
    elif pooling is not None:
        raise ValueError(f"pooling= / normalize= apply to task 'feature-extraction', not {task!r}")
    if block is not None:
        from hf_fast.blocks import block_name

        block = block_name(block)
    quantize._method(calibration_method)
    spec = registry.find(family.model_type)  # None: the generic encoder rule (ONNX Runtime only)
    native = spec is not None
    auto_attention = isinstance(quantize_attention, str) and quantize_attention == "auto"
    if not (auto_attention or isinstance(quantize_attention, (bool, np.bool_))):
        raise ValueError(f"quantize_attention must be True, False or 'auto', got {quantize_attention!r}")
    if attention_tolerance is not None:
        if not auto_attention:
            raise ValueError("attention_tolerance applies to quantize_attention='auto' only, got "
                             f"quantize_attention={quantize_attention!r}")
        attention_tolerance = attention_auto.check_tolerance(attention_tolerance)
    elif auto_attention:
        attention_tolerance = attention_auto.DEFAULT_TOLERANCE
    if quantize_attention and not native:
        raise ValueError(f"quantize_attention={quantize_attention!r} needs an engine family's attention layout; "
                         f"{family.model_type!r} "
                         "exports through the generic encoder rule (Linear MatMuls only): "
                         f"{generic.engine_reason(family.model_type)}")
    if quantize_attention and native and (spec.engine.norm == "pre" or spec.engine.position == "rotary"):
        # the engine quantizes q / k before it could rotate them (runtime/plan.py): such a file would export and then
        # be refused at load, so say so here; "auto" (int8 only where it is safe) keeps fp32 attention everywhere
        why = (f"{family.model_type!r} layers are pre-LN / rotary: the engine runs their attention in fp32 only "
               "(it would quantize q and k before rotating them)")
        if not auto_attention:
            raise ValueError(f"quantize_attention=True: {why}; export without quantize_attention")
        import warnings

        warnings.warn(f"quantize_attention='auto': {why}; every layer keeps fp32 attention", stacklevel=2)
        quantize_attention, auto_attention, attention_tolerance = False, False, None
    if smooth_quant == "auto":
        smooth_quant = None if quantize_residuals else DEFAULT_SMOOTH_QUANT
    elif smooth_quant is not None:
        if isinstance(smooth_quant, bool) or not isinstance(smooth_quant, (int, float)) or not 0 <= smooth_quant <= 1:
            raise ValueError(f"smooth_quant must be None or an alpha in [0, 1], got {smooth_quant!r}")
        if quantize_residuals:
            raise ValueError("smooth_quant and quantize_residuals=True do not combine: the residual Adds read the "
                             "unsmoothed tensor, which is then not quantized at all")
    out_dir = artifact.check_out_dir(Path(out_dir), overwrite)
    keep = inplace.plan(model, out_dir, writes_weights=False)  # out_dir is the model's own folder: keep its files
    if keep is not None:
        metrics = keep.merge_metrics(metrics)
    input_names, output_names = list(family.inputs), list(TASKS[task]["outputs"])
    max_length = min(int(max_length), family.max_sequence_length(cfg))
    feeds = calibration.build_feeds(calibration_dataset, tokenizer, task, input_names, max_length=max_length,
                                    batch_size=calibration_batch_size, limit=calibration_size)
    if str(calibration_method).lower() != "minmax":
        feeds = calibration.pad_to_common_length(feeds, int(getattr(tokenizer, "pad_token_id", 0) or 0))
    if auto_attention:
        attention_auto.split_feeds(feeds)  # refuses a calibration set too small to hold any back, before any work
    n_samples = sum(int(f["input_ids"].shape[0]) for f in feeds)
    qat = (getattr(cfg, "hf_fast", None) or {}).get("qat") if use_qat_ranges else None
    module_ranges = (qat or {}).get("activation_ranges") or None
    if module_ranges is not None:
        calibration_method = "qat"
        smooth_quant = None  # the QAT scheme is what the model was trained with

    with artifact.atomic_dir(out_dir, overwrite) as tmp:
        fp32 = tmp / MODEL_FP32_NAME
        info = onnx_export.export_fp32(model, fp32, input_names, output_names, opset=opset, progress=progress,
                                       dynamic_axes=family.dynamic_axes(output_names, bool(TASKS[task]["token_level"])),
                                       fusions=getattr(family, "onnx_fusions", ()))
        # registry families: the graph walker's layer pattern finds the Linears; other encoders, and a registry
        # family whose graph the pattern does not match (a new transformers version, an unfused op), the generic rule
        # (models/generic.py): the artifact then runs in ONNX Runtime, the reason recorded
        from hf_fast.runtime.graph import GraphMatchError

        proto = onnx.load(str(fp32), load_external_data=False)
        linear_nodes, engine_refusal = None, None
        if native:
            try:
                if not quantize.encoder_linear_matmuls(proto):
                    raise GraphMatchError(f"no {family.layer.name} encoder layer in the exported graph")
            except GraphMatchError as exc:
                if quantize_attention:
                    raise
                engine_refusal = f"the {family.description} layer pattern does not match the exported graph: {exc}"
        if engine_refusal:  # the family's own prunable Linears (module paths), found in the graph by name
            paths = [n for n, m in model.named_modules() if family.linear_role(n) is not None
                     and getattr(m, "weight", None) is not None]
            linear_nodes = generic.onnx_linear_matmuls(proto, paths)
        elif not native:
            linear_nodes = family.onnx_linear_matmuls(proto)
        del proto
        qpath = tmp / MODEL_NAME
        src = fp32
        if smooth_quant is not None:
            from hf_fast.export import smooth

            src = tmp / "model_fp32_smoothed.onnx"
            smooth.smooth_graph(fp32, src, feeds, float(smooth_quant), nodes=linear_nodes)
        qkw = {"nodes": linear_nodes, "method": "minmax" if module_ranges else calibration_method,
               "progress": progress, "reduce_range": reduce_range, "quantize_residuals": quantize_residuals,
               "module_ranges": module_ranges, "quantize_attention": bool(quantize_attention)}
        selection = None
        if auto_attention:  # judged on a probe file calibrated without the held-back batches
            probe = tmp / "model_attention_probe.onnx"
            cal, held = attention_auto.split_feeds(feeds)
            quantize.quantize_qdq(src, probe, cal, **qkw)
            selection = attention_auto.measure(probe, held, attention_tolerance)
            probe.unlink()
        # the file itself is calibrated on every sample, as without "auto": a layer left fp32 is the default export's
        nodes = quantize.quantize_qdq(src, qpath, feeds, **qkw)
        if selection is not None:
            stripped = set(selection.pop("stripped"))
            attention_auto.strip_file(qpath, stripped)
            nodes = [n for n in nodes if n not in stripped]
        qgraph = LogicalGraph(onnx.load(str(qpath)))  # one read of the int8 graph for both questions
        weights = quantize.int8_linear_weights(qgraph)
        n_attention = len(set(nodes) & set(quantize.attention_matmuls(qgraph))) if quantize_attention else 0
        if len(weights) != len(nodes) - n_attention:
            raise RuntimeError(f"quantization produced {len(weights)} int8 Linear weights for "
                               f"{len(nodes) - n_attention} encoder Linear MatMuls")
        # the int8 file must run in ONNX Runtime, on a calibration batch
        out = onnx_export.run_onnx(qpath, feeds[0], output_names)
        if not all(np.all(np.isfinite(v)) for v in out.values()):
            raise RuntimeError("the int8 model produced non-finite outputs on a calibration sample")
        del qgraph
        if src != fp32:
            src.unlink()
        if not keep_fp32:
            fp32.unlink()
        sp = artifact.sparsity_report(weights, block)
        cfg.save_pretrained(str(tmp))
        if tokenizer is not None:
            tokenizer.save_pretrained(str(tmp))
        fc = _fast_config(model, task, family, input_names, output_names, sp, calibration_method, n_samples,
                          max_length, opset, info, metrics, tmp, keep_fp32, len(nodes), reduce_range,
                          quantize_residuals, smooth_quant, n_attention, engine_refusal, selection)
        if pooling is not None:
            fc["pooling"] = pooling
        artifact.write_json(tmp / FAST_CONFIG_NAME, fc)
        (tmp / "README.md").write_text(artifact.model_card(fc), encoding="utf-8")
        if keep is not None:
            keep.carry_into(tmp)
            if keep.weights_same:  # the folder is still a transformers checkpoint: keep its save_fast card
                from hf_fast.hub import write_model_card

                write_model_card(tmp, metrics=fc["metrics"], **keep.card)
    return out_dir


def _attention_summary(n_attention: int, selection: dict | None) -> str:
    if selection is not None:
        per = selection["layers"]
        return (f"auto: int8 (QDQ on q.k^T and p.v) in {per.count('int8')} of {len(per)} layers, fp32 in the others "
                f"(tolerance {selection['tolerance']:g})")
    return "int8 (QDQ on q.k^T and p.v)" if n_attention else "fp32"


def _fast_config(model, task, family, input_names, output_names, sp, method, n_samples, max_length, opset, info,
                 metrics, tmp: Path, keep_fp32: bool, n_quant: int, reduce_range: bool = False,
                 quantize_residuals: bool = False, smooth_quant: float | None = None, n_attention: int = 0,
                 engine_refusal: str | None = None, selection: dict | None = None):
    import onnxruntime
    import torch
    import transformers

    import hf_fast
    from hf_fast.export import artifact

    cfg = model.config
    native = registry.find(family.model_type) is not None
    dims = family.normalize_config(cfg)
    max_pos = int(cfg.max_position_embeddings)
    max_seq = family.max_sequence_length(cfg)
    try:
        isa = hf_fast.native_info()["isa"]
    except hf_fast.NativeError:  # e.g. HF_FAST_ISA names an ISA this CPU lacks: the artifact is tuned for none
        isa = None
    files = {MODEL_NAME: artifact.file_entry(tmp / MODEL_NAME)}
    if keep_fp32:
        files[MODEL_FP32_NAME] = artifact.file_entry(tmp / MODEL_FP32_NAME)
    return {
        "format_version": FORMAT_VERSION,
        "library": artifact.LIBRARY,
        "task": task,
        "architecture": type(model).__name__,
        "model_type": family.model_type,
        "num_layers": dims["num_layers"],
        "hidden_size": dims["hidden_size"],
        "num_heads": dims["num_heads"],
        "intermediate_size": dims["intermediate_size"],
        "max_position_embeddings": max_pos,
        "max_sequence_length": max_seq,
        "vocab_size": int(cfg.vocab_size),
        "type_vocab_size": int(getattr(cfg, "type_vocab_size", None) or 0) if family.has_token_type_input else 0,
        "num_labels": int(cfg.num_labels) if task != "question-answering" else 2,
        "inputs": input_names,
        "outputs": output_names,
        "opset": opset,
        "block": sp["block"],
        "sparsity": sp["sparsity"],
        "element_sparsity": sp["element_sparsity"],
        "quantization": {
            "format": "QDQ",
            "weights": "int8 symmetric per-channel" + (" (7-bit range)" if reduce_range else ""),
            "activations": "uint8 asymmetric per-tensor",
            "quantized_ops": "encoder Linear MatMuls" + (" + attention MatMuls" if n_attention else ""),
            "num_quantized_matmuls": n_quant,
            "quantize_attention": bool(n_attention),
            "attention": _attention_summary(n_attention, selection),
            "num_quantized_attention_matmuls": n_attention,
            **({"attention_per_layer": selection["layers"], "attention_selection": selection} if selection else {}),
            "calibration_method": method,
            "calibration_size": n_samples,
            "calibration_max_length": max_length,
            "reduce_range": bool(reduce_range),
            "smooth_quant": smooth_quant,
            "residuals": "fake-quantized (shared Q/DQ)" if quantize_residuals else "fp32 (dedicated Q/DQ per MatMul)",
        },
        "isa_tuned_for": isa,
        # whether the native engine runs this family; when not, from_pretrained(backend="auto") uses ONNX Runtime
        "native_engine": {"family": native and engine_refusal is None,
                          "reason": engine_refusal if native else generic.engine_reason(family.model_type)},
        "export_check_max_abs_diff_fp32": info.max_abs_diff,
        "metrics": dict(metrics or {}),
        "files": files,
        "producer": {"hf_fast": hf_fast.__version__, "torch": torch.__version__,
                     "transformers": transformers.__version__, "onnxruntime": onnxruntime.__version__},
    }
