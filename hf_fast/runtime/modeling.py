"""transformers-style model classes over a fast artifact.

    from hf_fast.runtime import FastModelForSequenceClassification
    model = FastModelForSequenceClassification.from_pretrained("out/fast")      # backend="auto"
    logits = model(**tokenizer(["a fine film"], return_tensors="pt")).logits
    pipe = transformers.pipeline("text-classification", model=model, tokenizer=tokenizer)
    model(**batch, labels=y).loss                       # transformers' loss (losses.py)
    transformers.Trainer(model=model.as_torch_module(), ...).evaluate()

Inputs may be torch tensors, numpy arrays or nested lists of ints ([batch, sequence]; a 1-D sequence is
treated as a batch of one). They are validated (integer dtype, equal shapes, sequence length within
the position table, ids inside the vocabulary, 0/1 mask) before any backend sees them. Outputs are
transformers ``ModelOutput`` objects holding float32 torch tensors, like optimum's ORTModel (numpy arrays on a
runtime-only install without torch: see outputs.py).
"""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import numpy as np

from hf_fast._deps import torch_or_none
from hf_fast.export.artifact import load_fast_config
from hf_fast.models.tasks import TASKS
from hf_fast.runtime.backends import create_backend
from hf_fast.runtime.outputs import output_class, to_tensors


def _to_numpy(x: Any, name: str) -> np.ndarray | None:
    if x is None:
        return None
    if hasattr(x, "detach") and hasattr(x, "cpu"):  # torch tensor
        x = x.detach().cpu().numpy()
    try:
        a = np.asarray(x)
    except Exception as exc:
        raise ValueError(f"{name} must be a tensor, array or nested list of ints (ragged lists: pad the batch "
                         f"with tokenizer(..., padding=True)): {exc}") from exc
    if a.dtype == object:
        raise ValueError(f"{name} is ragged or holds non-numbers: pad the batch (tokenizer(..., padding=True))")
    if a.dtype == np.bool_ or not np.issubdtype(a.dtype, np.integer):
        if a.size == 0 and a.dtype == np.float64:  # np.asarray([]) is float
            a = a.astype(np.int64)
        else:
            raise ValueError(f"{name} must hold integers, got dtype {a.dtype}")
    if a.ndim == 1:
        a = a[None, :]
    if a.ndim != 2:
        raise ValueError(f"{name} must be 2-D [batch, sequence], got shape {tuple(a.shape)}")
    return np.ascontiguousarray(a, dtype=np.int64)


_REGISTERED: set[type] = set()
MODEL_TYPE = "hf-fast"  # the key of the Fast classes in those tables; no transformers config has this model type


def register_with_transformers(cls: type) -> None:
    """Declare ``cls`` a model of its task to transformers, so ``transformers.pipeline(task, model=fast_model)``
    accepts it without logging "The model ... is not supported for <task>".

    optimum's ORTModels call ``AutoModelFor<Task>.register`` for this, which fed the mapping transformers 4 passed
    to ``Pipeline.check_model_type``; transformers 5 passes the name tables (``MODEL_FOR_*_MAPPING_NAMES``)
    instead, which registration does not reach. The Fast classes go into those tables under the model type
    "hf-fast": no config maps to it, so AutoModel lookups never see the entry, and transformers' other readers
    of the tables (model cards' task inference) take the Fast class for a model of its task, which it is."""
    spec = TASKS.get(getattr(cls, "task", ""))
    if spec is None:
        return
    table_name = str(spec["pipeline_table"])  # transformers' task table its pipelines check the model against
    try:
        from transformers.models.auto import modeling_auto
    except ImportError:  # a transformers without the model tables (no torch): no pipeline to satisfy either
        return
    table = getattr(modeling_auto, table_name, None)
    if not isinstance(table, dict):
        return
    names = table.get(MODEL_TYPE, ())
    names = (names,) if isinstance(names, str) else tuple(names)
    if cls.__name__ not in names:
        table[MODEL_TYPE] = (*names, cls.__name__)


class FastModel:
    """Base class: an artifact (fast_config + transformers config) and a backend that runs its model.onnx."""

    task: str = ""
    main_input_name = "input_ids"
    input_modalities = ("text",)
    output_modalities = ("text",)
    _is_hf_fast = True
    _target_names: tuple[str, ...] = ("labels",)  # forward's targets for the loss

    def __init__(self, backend, config, fast_config: dict[str, Any], path: Path | None = None):
        self.backend = backend
        self.config = config
        self.fast_config = fast_config
        self.path = path
        self.name_or_path = str(path) if path is not None else ""
        self.input_names = list(fast_config["inputs"])
        self.output_names = list(fast_config["outputs"])
        self.vocab_size = int(fast_config["vocab_size"])
        self.max_length = int(fast_config.get("max_sequence_length") or fast_config["max_position_embeddings"])
        self.type_vocab_size = int(fast_config.get("type_vocab_size") or 0)
        if "transformers.models.auto.modeling_auto" in sys.modules:  # free now; else when a pipeline reads .device
            self._register()

    # ---------------------------------------------------------------- loading
    @classmethod
    def from_pretrained(cls, path: str | Path, backend: str | None = None, verify: bool = True,
                        *, revision: str | None = None, cache_dir=None, token=None,
                        local_files_only: bool | None = None, force_download: bool = False,
                        subfolder: str = "", **kwargs):
        """Load an artifact folder written by `hf_fast.export`, or a Hub repo id ("user/repo").

        backend: "auto" (the default; env HF_FAST_BACKEND): the hf-fast engine when it runs the artifact's family
            and its plan matches the graph, else ONNX Runtime with one warning saying why (explain() repeats it);
            "native" (the engine, or GraphMatchError naming the family and the node it cannot run) or "onnxruntime".
        verify: check model.onnx against the sha256 in fast_config.json (a corrupted or truncated
            file raises ValueError).
        revision, cache_dir, token, local_files_only, force_download, subfolder: for a Hub repo id, downloaded
            with huggingface_hub.snapshot_download into the Hub cache (HF_ENDPOINT, HF_HUB_OFFLINE honoured; see
            hf_fast.hub).
        Other keyword arguments: the backend's options (e.g. num_threads=2), and the transformers loading
            arguments (load_options.py): device="cpu" / device_map, dtype="auto", trust_remote_code=False, config=,
            id2label= ... are honoured; those that do not apply to an int8 CPU artifact (low_cpu_mem_usage,
            attn_implementation, ...) are ignored with a one-line warning; a GPU device raises ValueError.
        """
        from transformers import AutoConfig

        from hf_fast.export.artifact import ArtifactError
        from hf_fast.hub import resolve_artifact
        from hf_fast.runtime.load_options import apply_config, sort_kwargs

        caller = f"{cls.__name__}.from_pretrained"
        run_options = cls._pop_run_options(kwargs)  # a task's own loading options (feature-extraction: output=)
        opts = sort_kwargs(caller, kwargs, backend, cls.task)  # before any download or parse: bad arguments fail fast
        path = resolve_artifact(path, revision=revision, cache_dir=cache_dir, token=token,
                                local_files_only=local_files_only, force_download=force_download)
        if subfolder:
            path = path / subfolder
        try:
            fc = load_fast_config(path, verify=verify)
        except ArtifactError as exc:
            if (path / "config.json").is_file() and not (path / "fast_config.json").exists():
                auto = TASKS[cls.task]["auto_class"] if cls.task in TASKS else "AutoModelFor<Task>"
                raise ArtifactError(
                    f"{str(path)!r} is a transformers checkpoint, not an hf-fast folder (no fast_config.json). Make "
                    "one with hf_fast.save_fast(model, tokenizer, out_dir, calibration_dataset=texts) where model = "
                    f"transformers.{auto}.from_pretrained({str(path)!r}), or "
                    f"`hf-fast export -m {path} -o out_dir --calibration texts.txt`") from exc
            raise
        if cls.task and fc["task"] != cls.task:
            want = TASKS[fc["task"]]["fast_class"] if fc["task"] in TASKS else "?"
            raise ValueError(f"{str(path)!r} holds a {fc['task']!r} model; load it with {want}, not {cls.__name__}")
        if not (path / "config.json").is_file():
            raise ValueError(f"{str(path)!r}: config.json is missing")
        config = apply_config(caller, AutoConfig.from_pretrained(str(path)), opts)
        be = create_backend(backend, path, cls._backend_config(fc, run_options), **opts.backend_options)
        missing = [n for n in fc["outputs"] if n not in be.output_names]
        if missing and not run_options:
            raise ValueError(f"{path / 'model.onnx'} lacks the outputs {missing} that fast_config.json promises")
        model = cls(be, config, fc, path)
        model._configure(run_options)
        return model

    @classmethod
    def _pop_run_options(cls, kwargs: dict[str, Any]) -> dict[str, Any]:
        """Take this class's own loading options out of from_pretrained's keyword arguments (none here)."""
        return {}

    @classmethod
    def _backend_config(cls, fast_config: dict[str, Any], run_options: dict[str, Any]) -> dict[str, Any]:
        """The fast_config the backend is built from (a subclass may ask it for other outputs)."""
        return fast_config

    def _configure(self, run_options: dict[str, Any]) -> None:
        """Apply this class's loading options to the loaded model (none here)."""

    # ---------------------------------------------------------------- saving
    def save_pretrained(self, save_directory: str | Path, **kwargs) -> Path:
        """Write the folder this model was loaded from to ``save_directory``, as transformers' ``save_pretrained``
        writes a loadable folder: its model files (model.onnx, fast_config.json, configs, tokenizer, card, weights if
        present) copied, not linked (editing one copy leaves the other alone), atomically
        (``hf_fast.export.artifact.atomic_dir``: an artifact there is replaced, other files there kept). The int8
        weights are what the folder holds: to save a changed transformers model use ``hf_fast.save_fast``. Saving
        into the folder the model came from does nothing. Returns the folder's path."""
        import shutil

        from hf_fast.export import artifact

        if self.path is None:
            raise ValueError(f"this {type(self).__name__} was not loaded from a folder: nothing to save")
        ignored = sorted(k for k in kwargs if k not in ("safe_serialization", "max_shard_size", "is_main_process"))
        if ignored:  # those three describe how to write PyTorch weights: the folder's own files are copied
            import warnings

            warnings.warn(f"{type(self).__name__}.save_pretrained: {', '.join(ignored)} ignored (the folder is "
                          "copied as loaded)", UserWarning, stacklevel=2)
        out = Path(save_directory)
        if artifact.same_dir(self.path, out):
            return out
        load_fast_config(self.path, verify=True)  # what is copied is still what was loaded
        with artifact.atomic_dir(out) as tmp:
            for entry in sorted(Path(self.path).iterdir()):
                if artifact.is_model_file(entry.name):
                    if entry.is_dir():
                        shutil.copytree(entry, tmp / entry.name)
                    else:
                        shutil.copyfile(entry, tmp / entry.name)
        return out

    def push_to_hub(self, repo_id: str, **kwargs):
        """Upload the folder this model was loaded from (``hf_fast.hub.push_fast_folder``: verified first, no pickles
        or checkpoints). Keyword arguments: token, private, revision, commit_message, commit_description,
        create_pr. Returns huggingface_hub's CommitInfo."""
        from hf_fast.hub import push_fast_folder

        if self.path is None:
            raise ValueError(f"this {type(self).__name__} was not loaded from a folder: nothing to push")
        return push_fast_folder(self.path, repo_id, **kwargs)

    # ---------------------------------------------------------------- torch-like surface for pipelines
    def _register(self) -> None:
        if type(self) not in _REGISTERED:  # once per class, as optimum's ORTModel does in __init__
            register_with_transformers(type(self))
            _REGISTERED.add(type(self))

    @property
    def device(self):
        torch = torch_or_none()
        if torch is None:  # runtime-only install: transformers' pipelines need torch anyway
            return "cpu"
        # transformers' Pipeline.__init__ reads model.device before the pipeline checks the model's class; the
        # tables live in a transformers module that imports torch, so they are filled here (torch is loaded by now)
        # rather than in __init__, which would put torch on the serving path's load time
        self._register()
        return torch.device("cpu")

    @property
    def dtype(self):
        torch = torch_or_none()
        return np.dtype(np.float32) if torch is None else torch.float32

    def to(self, *args, **kwargs):
        torch = torch_or_none()
        devices = (str,) if torch is None else (str, torch.device)
        for a in list(args) + list(kwargs.values()):
            if isinstance(a, devices) and str(a).split(":")[0] != "cpu":
                raise ValueError(f"hf-fast models run on the CPU; cannot move to {a}")
        return self

    def eval(self):
        return self

    def train(self, mode: bool = True):
        if mode:
            raise ValueError("hf-fast artifacts are inference-only")
        return self

    def can_generate(self) -> bool:
        return False

    def as_torch_module(self):
        """This model as a parameter-free ``torch.nn.Module`` for ``transformers.Trainer(model=...)``:
        ``Trainer.evaluate`` / ``predict`` then run the fast model (torch_module.py)."""
        from hf_fast.runtime.torch_module import as_torch_module

        return as_torch_module(self)

    @property
    def _modules(self):
        # torch / accelerate read this first from what they take for an nn.Module (Trainer(model=...) does):
        # say what to pass instead of "no attribute '_modules'"
        raise AttributeError(f"{type(self).__name__} is not a torch.nn.Module: pass "
                             "model=fast_model.as_torch_module() to transformers.Trainer (evaluate / predict)")

    def explain(self, as_dict: bool = False) -> str | dict[str, Any]:
        """Which kernel runs each encoder Linear and why: zero-block fraction and block, sparse or dense kernel (and
        the reason, e.g. below the sparse/dense crossover), attention path (fp32 / int8), ISA and kernel names; on
        ONNX Runtime, the reason the model runs there. Returns the table as a str (``print(model.explain())``), or
        with ``as_dict=True`` the records (see hf_fast/runtime/explain.py). Prints nothing itself."""
        from hf_fast.runtime.explain import explain, format_explain

        rec = explain(self)
        return rec if as_dict else format_explain(rec)

    def __repr__(self):
        return (f"{type(self).__name__}(path={self.name_or_path!r}, task={self.fast_config['task']!r}, "
                f"backend={getattr(self.backend, 'name', type(self.backend).__name__)!r}, "
                f"block={self.fast_config.get('block')!r}, sparsity={self.fast_config['sparsity'].get('overall')})")

    # ---------------------------------------------------------------- inputs
    def prepare_inputs(self, input_ids=None, attention_mask=None, token_type_ids=None):
        """Validate and convert inputs to int64 numpy [batch, sequence]; fills a missing mask / token types."""
        if input_ids is None:
            raise ValueError("input_ids is required")
        ids = _to_numpy(input_ids, "input_ids")
        b, s = ids.shape
        if b == 0 or s == 0:
            raise ValueError(f"input_ids is empty (shape {ids.shape})")
        if s > self.max_length:
            raise ValueError(f"sequence length {s} exceeds the model's {self.max_length} positions: truncate the "
                             f"input (tokenizer(..., truncation=True, max_length={self.max_length}))")
        lo, hi = int(ids.min()), int(ids.max())
        if lo < 0 or hi >= self.vocab_size:
            raise ValueError(f"input_ids must lie in [0, {self.vocab_size}), got values in [{lo}, {hi}]: "
                             "is the tokenizer the model's own?")
        mask = _to_numpy(attention_mask, "attention_mask")
        if mask is None:
            mask = np.ones_like(ids)
        elif mask.shape != ids.shape:
            raise ValueError(f"attention_mask shape {mask.shape} != input_ids shape {ids.shape}")
        elif int(mask.min()) < 0 or int(mask.max()) > 1:  # int64 here: {0, 1} exactly (np.isin cost ~15 us a call)
            raise ValueError("attention_mask must hold only 0 and 1")
        tt = _to_numpy(token_type_ids, "token_type_ids")
        if tt is not None:
            if tt.shape != ids.shape:
                raise ValueError(f"token_type_ids shape {tt.shape} != input_ids shape {ids.shape}")
            if "token_type_ids" not in self.input_names:
                if tt.any():
                    raise ValueError(f"this {self.fast_config['model_type']} model takes no token_type_ids "
                                     "(segment ids must be all zero)")
                tt = None
            elif tt.min() < 0 or tt.max() >= max(self.type_vocab_size, 1):
                raise ValueError(f"token_type_ids must lie in [0, {self.type_vocab_size}), got values in "
                                 f"[{int(tt.min())}, {int(tt.max())}]")
        if tt is None and "token_type_ids" in self.input_names:
            tt = np.zeros_like(ids)
        return ids, mask, tt

    def run(self, input_ids=None, attention_mask=None, token_type_ids=None) -> dict[str, np.ndarray]:
        """Validated inputs -> {output name: float32 numpy array} from the backend."""
        ids, mask, tt = self.prepare_inputs(input_ids, attention_mask, token_type_ids)
        return self.backend.run(ids, mask, tt)

    def forward(self, input_ids=None, attention_mask=None, token_type_ids=None, return_dict: bool = True,
                **kwargs):
        """Run the model; ``labels`` (or ``start_positions`` / ``end_positions`` for question answering) add the
        loss a transformers model computes from the same logits (losses.py), so Trainer.evaluate and metric
        loops work."""
        targets = {k: kwargs.pop(k) for k in self._target_names if k in kwargs}
        num_items = kwargs.pop("num_items_in_batch", None)  # the Trainer passes it to models that take **kwargs
        ignored = {k for k, v in kwargs.items() if v is not None and k not in ("output_attentions",
                   "output_hidden_states", "use_cache", "position_ids", "head_mask", "inputs_embeds", "labels")}
        if ignored:
            raise TypeError(f"{type(self).__name__}.forward() got unexpected arguments {sorted(ignored)}")
        for k in ("position_ids", "head_mask", "inputs_embeds", "labels"):
            if kwargs.get(k) is not None:
                raise ValueError(f"{k} is not supported by {type(self).__name__}")
        tensors = to_tensors(self.run(input_ids, attention_mask, token_type_ids))  # numpy without torch
        loss = None
        if any(v is not None for v in targets.values()):
            from hf_fast._deps import missing

            if missing(("torch",)):
                raise ImportError("forward(labels=...) computes transformers' loss, which needs torch: pip install "
                                  "torch (or 'hf-fast[train]')", name="torch")
            from hf_fast.runtime.losses import task_loss

            loss = task_loss(self.fast_config["task"], self.config, tensors, num_items_in_batch=num_items, **targets)
        result = self._wrap(tensors, loss)
        return result if return_dict else result.to_tuple()

    __call__ = forward

    def _wrap(self, tensors, loss=None):  # pragma: no cover - subclasses
        raise NotImplementedError


class FastModelForSequenceClassification(FastModel):
    task = "text-classification"

    def _wrap(self, t, loss=None):
        return output_class("SequenceClassifierOutput")(loss=loss, logits=t["logits"])


class FastModelForQuestionAnswering(FastModel):
    task = "question-answering"
    _target_names = ("start_positions", "end_positions")

    def _wrap(self, t, loss=None):
        return output_class("QuestionAnsweringModelOutput")(loss=loss, start_logits=t["start_logits"],
                                                            end_logits=t["end_logits"])


class FastModelForTokenClassification(FastModel):
    task = "token-classification"

    def _wrap(self, t, loss=None):
        return output_class("TokenClassifierOutput")(loss=loss, logits=t["logits"])


# sentence-transformers' output_value names, and optimum's / transformers' for the token states
FEATURE_OUTPUTS = {"sentence_embedding": "sentence_embedding", "last_hidden_state": "last_hidden_state",
                   "token_embeddings": "last_hidden_state"}


class FastModelForFeatureExtraction(FastModel):
    """The encoder of a feature-extraction artifact (optimum's ORTModelForFeatureExtraction for hf-fast).

    ``from_pretrained(path, output=...)`` picks what the model returns:

    * ``"last_hidden_state"`` (the default, as optimum; alias ``"token_embeddings"``, sentence-transformers' name):
      ``BaseModelOutput(last_hidden_state=[batch, sequence, hidden])``, what transformers' feature-extraction
      pipeline reads;
    * ``"sentence_embedding"``: ``BaseModelOutputWithPooling(pooler_output=[batch, hidden])``, the sentence
      embeddings of the artifact's pooling and normalisation (fast_config.json "pooling"). The native engine runs
      them in its head program, masked by the attention mask; ONNX Runtime runs the same graph and pools in numpy
      (hf_fast/pooling.py). ``FastSentenceTransformer`` loads this.
    """

    task = "feature-extraction"
    output: str = "last_hidden_state"

    @classmethod
    def _pop_run_options(cls, kwargs: dict[str, Any]) -> dict[str, Any]:
        out = kwargs.pop("output", "last_hidden_state")
        if out not in FEATURE_OUTPUTS:
            raise ValueError(f"{cls.__name__}.from_pretrained(output={out!r}): choose one of "
                             f"{', '.join(map(repr, FEATURE_OUTPUTS))}")
        return {"output": FEATURE_OUTPUTS[out]}

    @classmethod
    def _backend_config(cls, fast_config, run_options):
        if run_options.get("output") != "sentence_embedding":
            return fast_config
        from hf_fast.pooling import check_pooling

        try:
            check_pooling(fast_config.get("pooling"))
        except ValueError as exc:
            raise ValueError(f"fast_config.json has no usable sentence pooling ({exc}): export the model with "
                             "task='feature-extraction' (hf_fast.save_fast / hf-fast export)") from exc
        return {**fast_config, "outputs": ["sentence_embedding"]}  # the engine fuses the pooling (engine._pooled)

    def _configure(self, run_options):
        self.output = run_options.get("output", "last_hidden_state")
        self.pooling = self.fast_config.get("pooling")
        if self.output == "sentence_embedding":
            self.output_names = ["sentence_embedding"]

    def run(self, input_ids=None, attention_mask=None, token_type_ids=None) -> dict[str, np.ndarray]:
        ids, mask, tt = self.prepare_inputs(input_ids, attention_mask, token_type_ids)
        out = self.backend.run(ids, mask, tt)
        if self.output == "sentence_embedding" and "sentence_embedding" not in out:
            from hf_fast.pooling import pool  # a backend that returns token states (ONNX Runtime): pool in numpy

            out = {"sentence_embedding": pool(out["last_hidden_state"], mask, self.pooling["mode"],
                                              self.pooling["normalize"])}
        return out

    def _wrap(self, t, loss=None):
        if self.output == "sentence_embedding":
            return output_class("BaseModelOutputWithPooling")(pooler_output=t["sentence_embedding"])
        return output_class("BaseModelOutput")(last_hidden_state=t["last_hidden_state"])


TASK_TO_CLASS = {c.task: c for c in (FastModelForSequenceClassification, FastModelForQuestionAnswering,
                                     FastModelForTokenClassification, FastModelForFeatureExtraction)}


def load_fast_model(path, backend: str | None = None, **kw) -> FastModel:
    """Load an artifact with the class of its own task (keyword arguments: those of from_pretrained)."""
    from hf_fast.hub import resolve_artifact

    hub_kw = {k: kw.pop(k) for k in ("revision", "cache_dir", "token", "local_files_only", "force_download") if k in kw}
    path = resolve_artifact(path, **hub_kw)
    fc = load_fast_config(path / kw.get("subfolder", ""), verify=False)
    return TASK_TO_CLASS[fc["task"]].from_pretrained(path, backend=backend, **kw)
