"""The tasks hf-fast supports: transformers' Auto class and head suffix, graph outputs, per-token or per-sequence,
the transformers pipeline table and the hf-fast runtime class of each.

Read by the exporter (what to trace), the artifact writer (what to record) and the runtime (what to feed, which
ModelOutput and Fast class). Each family's head for a task is in its registry module. Pure Python: no torch.
"""
from __future__ import annotations

# canonical task names follow transformers' pipeline names
TASKS: dict[str, dict[str, object]] = {
    "text-classification": {
        "auto_class": "AutoModelForSequenceClassification",
        "class_suffix": "ForSequenceClassification",
        "outputs": ["logits"],
        "token_level": False,
        "pipeline_table": "MODEL_FOR_SEQUENCE_CLASSIFICATION_MAPPING_NAMES",  # transformers.models.auto.modeling_auto
        "fast_class": "FastModelForSequenceClassification",
    },
    "question-answering": {
        "auto_class": "AutoModelForQuestionAnswering",
        "class_suffix": "ForQuestionAnswering",
        "outputs": ["start_logits", "end_logits"],
        "token_level": True,
        "pipeline_table": "MODEL_FOR_QUESTION_ANSWERING_MAPPING_NAMES",  # transformers.models.auto.modeling_auto
        "fast_class": "FastModelForQuestionAnswering",
    },
    "token-classification": {
        "auto_class": "AutoModelForTokenClassification",
        "class_suffix": "ForTokenClassification",
        "outputs": ["logits"],
        "token_level": True,
        "pipeline_table": "MODEL_FOR_TOKEN_CLASSIFICATION_MAPPING_NAMES",  # transformers.models.auto.modeling_auto
        "fast_class": "FastModelForTokenClassification",
    },
    # the encoder alone (transformers' AutoModel, optimum's ORTModelForFeatureExtraction): the graph outputs the
    # token states; pooling and normalisation (fast_config.json "pooling") turn them into sentence embeddings
    "feature-extraction": {
        "auto_class": "AutoModel",
        "class_suffix": "Model",
        "outputs": ["last_hidden_state"],
        "token_level": True,
        "pipeline_table": "MODEL_MAPPING_NAMES",  # transformers.models.auto.modeling_auto (AutoModel's)
        "fast_class": "FastModelForFeatureExtraction",
    },
}

TASK_ALIASES = {
    "sequence-classification": "text-classification",
    "sentiment-analysis": "text-classification",
    "classification": "text-classification",
    "qa": "question-answering",
    "extractive-qa": "question-answering",
    "ner": "token-classification",
    "sentence-similarity": "feature-extraction",
    "sentence-embeddings": "feature-extraction",
    "embeddings": "feature-extraction",
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
