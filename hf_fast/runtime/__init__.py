"""hf_fast.runtime: run a fast artifact.

FastModelFor{SequenceClassification,QuestionAnswering,TokenClassification}.from_pretrained(dir, backend=...)
(modeling.py) over a backend (backends.py: the native engine of engine.py/plan.py/graph.py by default, ONNX Runtime
as the baseline). Names load lazily so `import hf_fast.runtime` stays cheap.
"""
_LAZY = {
    "FastModel": "hf_fast.runtime.modeling",
    "FastModelForSequenceClassification": "hf_fast.runtime.modeling",
    "FastModelForQuestionAnswering": "hf_fast.runtime.modeling",
    "FastModelForTokenClassification": "hf_fast.runtime.modeling",
    "FastModelForFeatureExtraction": "hf_fast.runtime.modeling",
    "load_fast_model": "hf_fast.runtime.modeling",
    "OnnxRuntimeBackend": "hf_fast.runtime.backends",
    "create_backend": "hf_fast.runtime.backends",
    "BACKENDS": "hf_fast.runtime.backends",
    "NativeBackend": "hf_fast.runtime.engine",
    "NativeEngine": "hf_fast.runtime.engine",
}
__all__ = list(_LAZY)


def __getattr__(name):
    mod = _LAZY.get(name)
    if mod is None:
        raise AttributeError(f"module 'hf_fast.runtime' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(mod), name)
