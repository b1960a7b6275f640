"""hf-fast: block-sparse int8 BERT-family models on CPUs.

train (FastTrainer: block pruning + distillation) -> export (sparse int8 ONNX fast artifact)
-> run (native block-sparse int8 engine, ONNX Runtime as the baseline).
Heavy modules (torch, transformers) load lazily, so ``import hf_fast`` stays cheap.
"""
from hf_fast.native import NativeError, UnsupportedISAError, native_info

__version__ = "0.1.0"
__all__ = ["native_info", "NativeError", "UnsupportedISAError", "__version__",
           "FastTrainer", "FastConfig", "DistillConfig", "PruningCallback", "DistillationLoss",
           "export", "FastModelForSequenceClassification", "FastModelForQuestionAnswering",
           "FastModelForTokenClassification", "FastModelForFeatureExtraction", "FastSentenceTransformer",
           "save_fast", "push_to_hub", "pipeline", "QuestionAnsweringPipeline",
           "load_fast_model"]

# Lazy exports: name -> module (imported on first attribute access, keeping `import hf_fast` cheap).
_LAZY = {
    "FastTrainer": "hf_fast.training.trainer",
    "FastConfig": "hf_fast.training.config",
    "DistillConfig": "hf_fast.training.config",
    "PruningCallback": "hf_fast.training.pruning",
    "DistillationLoss": "hf_fast.training.distillation",
    "export": "hf_fast.export",
    "FastModelForSequenceClassification": "hf_fast.runtime.modeling",
    "FastModelForQuestionAnswering": "hf_fast.runtime.modeling",
    "FastModelForTokenClassification": "hf_fast.runtime.modeling",
    "FastModelForFeatureExtraction": "hf_fast.runtime.modeling",
    "FastSentenceTransformer": "hf_fast.sentence_transformer",
    "load_fast_model": "hf_fast.runtime.modeling",
    "save_fast": "hf_fast.save",
    "push_to_hub": "hf_fast.save",
    "pipeline": "hf_fast.pipelines",
    "QuestionAnsweringPipeline": "hf_fast.pipelines",
}
# names that need the [train] extra (torch & co.); hf_fast.export / save_fast check inside export()
_TRAIN = {"FastTrainer", "PruningCallback", "DistillationLoss"}


def __getattr__(name):
    mod = _LAZY.get(name)
    if mod is None:
        raise AttributeError(f"module 'hf_fast' has no attribute {name!r}")
    import importlib

    if name in _TRAIN:
        from hf_fast._deps import require_train

        require_train(f"hf_fast.{name}")
    return getattr(importlib.import_module(mod), name)
