"""Which architectures and tasks the exporter supports, and how each maps to graph inputs/outputs.

One table, read by the exporter (what to trace), the artifact writer (what to record) and the runtime
(what to feed and which ModelOutput to build). Pure Python: no torch import.
"""
from __future__ import annotations

# canonical task names follow transformers' pipeline names
TASKS: dict[str, dict[str, object]] = {
    "text-classification": {
        "auto_class": "AutoModelForSequenceClassification",
        "class_suffix": "ForSequenceClassification",
        "outputs": ["logits"],
        "token_level": False,
    },
    "question-answering": {
        "auto_class": "AutoModelForQuestionAnswering",
        "class_suffix": "ForQuestionAnswering",
        "outputs": ["start_logits", "end_logits"],
        "token_level": True,
    },
    "token-classification": {
        "auto_class": "AutoModelForTokenClassification",
        "class_suffix": "ForTokenClassification",
        "outputs": ["logits"],
        "token_level": True,
    },
}

TASK_ALIASES = {
    "sequence-classification": "text-classification",
    "sentiment-analysis": "text-classification",
    "classification": "text-classification",
    "qa": "question-answering",
    "extractive-qa": "question-answering",
    "ner": "token-classification",
}

# model_type -> graph inputs (in order) and the ONNX node-name prefix of the encoder layers.
# MiniLM checkpoints are BertModel (model_type "bert").
ARCHITECTURES: dict[str, dict[str, object]] = {
    "bert": {"inputs": ["input_ids", "attention_mask", "token_type_ids"], "layer_prefix": "encoder/layer."},
    "distilbert": {"inputs": ["input_ids", "attention_mask"], "layer_prefix": "transformer/layer."},
    # RoBERTa: ONNX Runtime runs it; the native engine rejects its input-dependent position ids.
    "roberta": {"inputs": ["input_ids", "attention_mask"], "layer_prefix": "encoder/layer."},
}


def normalize_task(task: str) -> str:
    if not isinstance(task, str):
        raise ValueError(f"task must be a string, got {type(task).__name__}")
    t = task.strip().lower().replace("_", "-")
    t = TASK_ALIASES.get(t, t)
    if t not in TASKS:
        raise ValueError(f"unsupported task {task!r}: hf-fast exports {', '.join(TASKS)} "
                         f"(aliases: {', '.join(sorted(TASK_ALIASES))})")
    return t


def task_from_class_name(class_name: str) -> str | None:
    for task, spec in TASKS.items():
        if class_name.endswith(str(spec["class_suffix"])):
            return task
    return None


def task_from_architectures(architectures: list[str] | None) -> str | None:
    for a in architectures or []:
        t = task_from_class_name(a)
        if t:
            return t
    return None


def check_architecture(model_type: str | None) -> str:
    if model_type not in ARCHITECTURES:
        raise ValueError(f"unsupported architecture {model_type!r}: hf-fast exports BERT-family encoders "
                         f"({', '.join(ARCHITECTURES)}; MiniLM checkpoints are 'bert')")
    return model_type


def io_names(model_type: str, task: str) -> tuple[list[str], list[str]]:
    return list(ARCHITECTURES[check_architecture(model_type)]["inputs"]), list(TASKS[normalize_task(task)]["outputs"])
