"""The model card (README.md) of a fast folder, built with ``huggingface_hub.ModelCard`` / ``ModelCardData``.

    card = build_model_card(fc, metrics={"eval_accuracy": 0.9123}, speed=quick_speed(folder), datasets=["sst2"])
    card.save("out/fast/README.md");  ModelCard.load("out/fast/README.md").data.eval_results   # read back

Metadata: library_name, pipeline_tag, tags (``hf-fast``), base_model, datasets, license, and every evaluation
metric as a model-index ``EvalResult`` (task type, dataset, metric type/name/value), which the Hub renders and
indexes. The body shows each metric once (rounded to 4 significant digits), speed only when it was measured and
the measurement rounds agreed (hf_fast.bench.quick_speed), the per-layer sparsity, and how to load the folder
with the default backend (the native engine) and with ONNX Runtime.
"""
from __future__ import annotations

import math
import numbers
import re
from collections.abc import Iterable, Mapping
from typing import Any

HUB_TAG = "hf-fast"
_CLASSES = {"text-classification": "FastModelForSequenceClassification",
            "question-answering": "FastModelForQuestionAnswering",
            "token-classification": "FastModelForTokenClassification",
            "feature-extraction": "FastModelForFeatureExtraction"}
# the runtime a metric was measured in, from the prefix run_recipe gives it ("int8_native_accuracy", ...)
_WHERE = {"fp32": "fp32, PyTorch", "int8_native": "int8, hf-fast engine", "int8_onnxruntime": "int8, ONNX Runtime",
          "int8": "int8"}
_METRIC_KEY = re.compile(r"^(?:eval_)?(?:(" + "|".join(sorted(_WHERE, key=len, reverse=True)) + r")_)?(.+)$")
UNNAMED_DATASET = "unnamed evaluation set"


def round_metric(v: Any) -> Any:
    """4 significant digits, never rounding the integer part (0.873456 -> 0.8735, 87.3456 -> 87.35,
    12345.6 -> 12346.0); integers as int; bools, strings and non-finite floats as they are."""
    if isinstance(v, bool) or not isinstance(v, numbers.Real):
        return v
    if isinstance(v, numbers.Integral):
        return int(v)
    v = float(v)  # numpy scalars too: the YAML holds plain numbers
    if not math.isfinite(v) or v == 0:
        return v
    return round(v, max(0, 3 - math.floor(math.log10(abs(v)))))


def _is_number(v: Any) -> bool:
    return isinstance(v, numbers.Real) and not isinstance(v, bool) and math.isfinite(v)


def split_metrics(metrics: Mapping[str, Any]) -> tuple[list[dict[str, Any]], list[tuple[str, Any]]]:
    """-> (evaluations, properties). Sparsity figures (keys holding "sparsity") describe the model, not an
    evaluation on a dataset: they are properties. Every other finite number is an evaluation
    {"key", "type", "name", "value"}: type is the metric without the eval_/runtime prefix ("accuracy"), name says
    where it was measured ("accuracy (int8, hf-fast engine)"). Anything else is a property shown as it is."""
    evals, props = [], []
    for key, v in metrics.items():
        if "sparsity" in key:
            props.append((key, f"{100 * v:.2f}%" if _is_number(v) and 0 <= v <= 1 else v))
        elif _is_number(v):
            where, base = _METRIC_KEY.match(key).groups()
            evals.append({"key": key, "type": base, "name": f"{base} ({_WHERE[where]})" if where else base,
                          "value": round_metric(v)})
        else:
            props.append((key, v))
    return evals, props


def _tags(fc: Mapping[str, Any]) -> list[str]:
    tags = [HUB_TAG, "onnx", "int8", "sparse"]
    if fc.get("block") and fc["block"] != "1x1":
        tags.append(f"block-sparse-{fc['block']}")
    tags += [fc.get("model_type", ""), fc.get("task", "")]
    return list(dict.fromkeys(t for t in tags if t))


def _mb(n: int) -> str:
    return f"{n / 2**20:.2f} MiB"


def speed_section(speed: Mapping[str, Any] | None) -> list[str]:
    """Markdown lines for the speed figures of hf_fast.bench.quick_speed, or the note saying why there are none."""
    if not speed:
        return ["Speed: not measured (pass `measure_speed=True` to `save_fast`, or run `hf-fast bench` on this "
                "folder)."]
    setting = (f"batch {speed['batch_size']} x sequence {speed['sequence_length']}, {speed['threads']} thread(s), "
               f"{speed.get('cpu') or 'unknown CPU'} ({speed.get('isa') or '?'})")
    spread = f"{100 * speed['spread']:.0f}%"
    if not speed.get("stable"):
        return [f"Speed: not shown. The {speed['rounds']} measurement rounds ({setting}) varied by {spread}, more "
                f"than {100 * speed['max_spread']:.0f}%: the machine was busy, and a figure taken then would "
                f"mislead. Measure on an idle machine with `hf-fast bench PATH --threads {speed['threads']}`."]
    lat = speed["latency_ms"]
    names = {"native": "hf-fast engine (default)", "onnxruntime": "ONNX Runtime"}
    base = lat.get("onnxruntime")
    lines = [f"Latency, {setting}: median of {speed['rounds']} rounds of {speed['iterations']} runs, the hf-fast "
             f"engine and ONNX Runtime alternating within each round (the rounds agree within {spread}); measured "
             "when the folder was saved.", "",
             "| runtime | latency (ms) | speed-up vs ONNX Runtime |", "|---|---|---|"]
    for rt, ms in lat.items():
        up = speed.get("speedup") if rt == "native" else (base / ms if base and ms else None)
        lines.append(f"| {names.get(rt, rt)} | {round_metric(ms)} | {f'{up:.2f}x' if up else '-'} |")
    return lines


def _body(fc: Mapping[str, Any], evals, props, speed, transformers_weights: bool) -> str:
    sp = fc.get("sparsity") or {}
    q = fc.get("quantization") or {}
    quant = (f"{q.get('format', 'QDQ')}: weights {q.get('weights', 'int8')}, "
             f"activations {q.get('activations', 'uint8')}; {q.get('calibration_method', '?')} calibration on "
             f"{q.get('calibration_size', '?')} samples"
             + (f"; attention MatMuls int8 in layers {[i for i, x in enumerate(per) if x == 'int8']} "
                f"(quantize_attention='auto')" if (per := q.get("attention_per_layer")) and "int8" in per
                else "; attention MatMuls int8 too" if q.get("quantize_attention") else ""))
    rows = [("task", fc["task"]),
            ("architecture", f"{fc['architecture']} (model_type `{fc['model_type']}`)"),
            ("layers / hidden / heads / FFN", f"{fc.get('num_layers')} / {fc.get('hidden_size')} / "
                                              f"{fc.get('num_heads')} / {fc.get('intermediate_size')}"),
            ("block shape", fc.get("block") or "dense"),
            ("zero blocks, encoder Linears (overall)", f"{100 * float(sp.get('overall', 0.0)):.2f}%"),
            ("zero weights, encoder Linears", f"{100 * float(fc.get('element_sparsity', 0.0)):.2f}%"),
            ("quantization", quant)]
    rows += props
    files = fc.get("files") or {}
    for name in ("model.onnx", "model_fp32.onnx"):
        if name in files:
            rows.append((f"{name} size", _mb(files[name]["bytes"])))
    if fc.get("isa_tuned_for"):
        rows.append(("ISA tuned for", fc["isa_tuned_for"]))
    title = f"# {fc['architecture']} for {fc['task']}, sparse int8 (hf-fast)"
    engine = fc.get("native_engine") or {}
    native = engine.get("family", True) is not False  # older artifacts do not record it: an engine family
    where = ("The same `model.onnx` runs in hf-fast's native engine (the default backend) and in ONNX Runtime."
             if native else f"It runs in ONNX Runtime (the default backend falls back to it): {engine.get('reason')}.")
    lines = [title, "", f"Sparse int8 ONNX model written by `hf-fast`. {where}", "",
             "| property | value |", "|---|---|"] + [f"| {k} | {v} |" for k, v in rows]
    lines += ["", "## Results", ""]
    if evals:
        lines += ["| metric | value |", "|---|---|"] + [f"| {e['name']} | {e['value']} |" for e in evals]
    else:
        lines += ["Accuracy: not measured at export time."]
    lines += [""] + speed_section(speed)
    layers = [(k, v) for k, v in sp.items() if k != "overall"]
    if layers:
        lines += ["", "<details><summary>Sparsity per layer (fraction of zero blocks)</summary>", "",
                  "| layer | zero blocks |", "|---|---|"]
        lines += [f"| `{k}` | {100 * v:.2f}% |" for k, v in layers] + ["", "</details>"]
    cls = _CLASSES[fc["task"]]
    if fc["task"] == "feature-extraction":  # sentence embeddings: the sentence-transformers-style entry point
        lines += ["", "## Use", "", "```python", "from hf_fast import FastSentenceTransformer", "",
                  'model = FastSentenceTransformer.from_pretrained("path/to/this/folder")  # or its Hub repo id',
                  'embeddings = model.encode(["an example sentence", "another one"])',
                  "scores = model.similarity(embeddings, embeddings)", "```",
                  "", f"Pooling: {fc.get('pooling', {}).get('mode')}, normalised: "
                  f"{fc.get('pooling', {}).get('normalize')} (from {fc.get('pooling', {}).get('source')})."]
        return "\n".join(lines) + "\n"
    lines += ["", "## Use", "", "```python", "from transformers import AutoTokenizer",
              "", f"from hf_fast import {cls}", "",
              'path = "path/to/this/folder"  # or its Hub repo id, "user/name"',
              f"model = {cls}.from_pretrained(path)  # "
              + ("the hf-fast native engine (default backend)" if native else "ONNX Runtime (default backend: the "
                 "native engine does not run this family)"),
              f'# model = {cls}.from_pretrained(path, backend="onnxruntime")  # ONNX Runtime instead',
              "tok = AutoTokenizer.from_pretrained(path)",
              'outputs = model(**tok(["an example input"], return_tensors="pt"))',
              "```"]
    if transformers_weights:
        from hf_fast.export.tasks import TASKS

        lines += ["", "The same folder is a transformers checkpoint (`model.safetensors`, `config.json`): "
                  f"`transformers.{TASKS[fc['task']]['auto_class']}.from_pretrained(path)` loads the pruned fp32 "
                  "model."]
    return "\n".join(lines) + "\n"


def build_model_card(fc: Mapping[str, Any], *, metrics: Mapping[str, Any] | None = None,
                     speed: Mapping[str, Any] | None = None, transformers_weights: bool = False,
                     base_model: str | None = None, datasets: Iterable[str] = (), license: str | None = None,
                     eval_dataset: str | None = None, model_name: str | None = None):
    """The card of the artifact described by ``fc`` (its fast_config.json) as a huggingface_hub ModelCard.

    metrics: {name: value}, merged over ``fc["metrics"]`` (a name given twice shows once, the later value).
    eval_dataset: the dataset the metrics were measured on (Hub id or name) for the model-index; default the
    first of ``datasets``, else "unnamed evaluation set". transformers_weights: the folder also holds
    model.safetensors (library_name "transformers", and the card says how to load it there)."""
    from huggingface_hub import EvalResult, ModelCard, ModelCardData

    from hf_fast.hub import looks_like_repo_id

    datasets = [d for d in datasets if d]
    evals, props = split_metrics({**dict(fc.get("metrics") or {}), **dict(metrics or {})})
    ds = eval_dataset or (datasets[0] if datasets else None)
    results = [EvalResult(task_type=fc["task"], dataset_type=ds or "unknown", dataset_name=ds or UNNAMED_DATASET,
                          metric_type=e["type"], metric_name=e["name"], metric_value=e["value"]) for e in evals]
    data = ModelCardData(
        library_name="transformers" if transformers_weights else HUB_TAG, pipeline_tag=fc["task"], tags=_tags(fc),
        base_model=base_model if base_model and looks_like_repo_id(base_model) else None,
        datasets=datasets or None, license=license,
        model_name=model_name or f"{fc['architecture']} sparse int8 (hf-fast)", eval_results=results or None)
    return ModelCard(f"---\n{data.to_yaml()}\n---\n\n" + _body(fc, evals, props, speed, transformers_weights))
