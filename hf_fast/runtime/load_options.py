"""The keyword arguments transformers users pass to ``from_pretrained``, sorted for a CPU int8 artifact.

    FastModelForSequenceClassification.from_pretrained(path, device="cpu", dtype="auto", trust_remote_code=False)

Each argument is honoured, ignored with a one-line warning (it does not apply to an exported int8 graph run on the
CPU), or refused with a ValueError (it asks for something the artifact cannot do: a GPU, another quantization).
Hub arguments (revision, cache_dir, token, local_files_only, force_download) are ``from_pretrained``'s own and go
to ``hf_fast.hub.resolve_artifact``; what is left must be an option of the backend (e.g. ``num_threads``), else a
TypeError names the call, never an internal class. torch is never imported here: devices and dtypes are read
through ``str()``.
"""
from __future__ import annotations

import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

# transformers loading arguments that do not apply to an exported graph: ignored, each with a one-line warning
NOT_APPLICABLE = {
    "low_cpu_mem_usage": "the engine loads model.onnx itself",
    "use_safetensors": "the engine runs model.onnx (the safetensors weights are for transformers)",
    "attn_implementation": "the engine runs its own attention",
    "variant": "the engine runs model.onnx",
    "weights_only": "the artifact holds no pickle",
    "from_tf": "the engine runs model.onnx",
    "from_flax": "the engine runs model.onnx",
    "offload_folder": "the model runs from CPU memory",
    "offload_state_dict": "the model runs from CPU memory",
    "max_memory": "the model runs from CPU memory",
    "use_kernels": "the engine runs its own kernels",
    "resume_download": "downloads always resume",
    "proxies": "configure proxies with HTTP(S)_PROXY",
    "mirror": "set HF_ENDPOINT for a mirror",
    "_fast_init": "the engine loads model.onnx itself",
}
# arguments that ask for something an int8 CPU artifact cannot give: refused
REFUSED = {
    "quantization_config": "the artifact is already quantized (static int8); export again with other settings "
                           "(hf_fast.export / hf-fast export)",
    "state_dict": "the weights are baked into model.onnx; load the transformers weights and export again",
    "gguf_file": "hf-fast runs its own ONNX artifacts, not GGUF files",
    "output_loading_info": "an artifact is loaded whole or not at all",
    "tp_plan": "hf-fast models run in one process on the CPU",
    "device_mesh": "hf-fast models run in one process on the CPU",
}
_CPU_PLACEMENTS = {"cpu", "auto", "balanced", "balanced_low_0", "sequential"}
_FLOAT32 = {"auto", "float32", "torch.float32", "float", "fp32"}
_LABEL_KEYS = ("id2label", "label2id", "num_labels", "problem_type")
_PROBLEM_TYPES = (None, "regression", "single_label_classification", "multi_label_classification")


@dataclass
class LoadOptions:
    backend_options: dict[str, Any] = field(default_factory=dict)
    config: Any = None                                          # config= (a PretrainedConfig or a path)
    config_overrides: dict[str, Any] = field(default_factory=dict)  # id2label=, label2id=, num_labels=, ...


def _warn(msg: str) -> None:
    warnings.warn(msg, UserWarning, stacklevel=4)  # user code -> from_pretrained -> sort_kwargs -> here


def check_cpu_device(caller: str, name: str, value: Any, auto_class: str = "AutoModelFor<Task>") -> None:
    """Accept a CPU placement ("cpu", torch.device("cpu"), -1, "auto", {"": "cpu"}); refuse any other."""
    if value is None:
        return
    if isinstance(value, Mapping):  # a device_map
        for v in value.values():
            check_cpu_device(caller, name, v, auto_class)
        return
    if isinstance(value, int) and not isinstance(value, bool):
        ok = value == -1  # pipelines' "CPU"; 0, 1, ... are GPU indices
    else:
        s = str(value).strip().lower()
        ok = s in _CPU_PLACEMENTS or s.startswith("cpu:")
    if not ok:
        raise ValueError(f"{caller}({name}={value!r}): hf-fast models run on the CPU only (the int8 engine and "
                         "ONNX Runtime's CPU provider). For a GPU, load the fp32 weights of the same folder with "
                         f"transformers.{auto_class}.from_pretrained(path).")


def _dtype_name(value: Any) -> str:
    return str(value).strip().lower()


def sort_kwargs(caller: str, kwargs: Mapping[str, Any], backend: str | None, task: str = "") -> LoadOptions:
    """Split ``from_pretrained``'s extra keyword arguments; warn about or refuse the transformers ones."""
    from hf_fast.export.tasks import TASKS
    from hf_fast.runtime.backends import backend_name, backend_options

    auto_class = str(TASKS[task]["auto_class"]) if task in TASKS else "AutoModelFor<Task>"
    out = LoadOptions()
    allowed = backend_options(backend) if kwargs else ()
    unknown = []
    for key, value in kwargs.items():
        if key in ("device", "device_map"):
            check_cpu_device(caller, key, value, auto_class)
        elif key in ("dtype", "torch_dtype"):
            if value is not None and _dtype_name(value) not in _FLOAT32:
                _warn(f"{caller}: {key}={value!r} ignored: the artifact computes in int8 and returns float32")
        elif key == "trust_remote_code":
            if value:
                _warn(f"{caller}: trust_remote_code={value!r} ignored: an hf-fast folder holds no code to run")
        elif key in REFUSED:
            if value is not None:
                raise ValueError(f"{caller}({key}=...) cannot be honoured: {REFUSED[key]}")
        elif key in NOT_APPLICABLE:
            if value is not None:
                _warn(f"{caller}: {key}={value!r} ignored: {NOT_APPLICABLE[key]}")
        elif key == "config":
            out.config = value
        elif key in _LABEL_KEYS:
            out.config_overrides[key] = value
        elif allowed is None or key in allowed:
            out.backend_options[key] = value
        else:
            unknown.append(key)
    if unknown:
        opts = ", ".join(allowed or ()) or "none"
        raise TypeError(f"{caller}() got unexpected keyword argument(s) {', '.join(map(repr, unknown))} "
                        f"(options of the {backend_name(backend)} backend: {opts}; Hub: revision, cache_dir, token, "
                        "local_files_only, force_download)")
    return out


def apply_config(caller: str, config, opts: LoadOptions, artifact_config=None):
    """The transformers config to use: ``config=`` if given, else the artifact's, with label overrides applied.
    The exported head is fixed: a different number of labels is refused."""
    if opts.config is not None:
        given = opts.config
        if not hasattr(given, "to_dict"):
            from transformers import AutoConfig

            given = AutoConfig.from_pretrained(str(given))
        if getattr(given, "num_labels", None) != getattr(config, "num_labels", None):
            raise ValueError(f"{caller}(config=...): the config has {given.num_labels} labels but the exported head "
                             f"has {config.num_labels}")
        config = given
    over = dict(opts.config_overrides)
    if not over:
        return config
    n = int(config.num_labels)
    if "num_labels" in over and over.pop("num_labels") not in (None, n):
        raise ValueError(f"{caller}(num_labels=...): the exported head has {n} labels; export a model with another "
                         "head to change it")
    for key in ("id2label", "label2id"):
        v = over.get(key)
        if v is not None and len(v) != n:
            raise ValueError(f"{caller}({key}=...): {len(v)} labels given, the exported head has {n}")
    if over.get("id2label") is not None:
        config.id2label = {int(k): str(v) for k, v in over["id2label"].items()}
        if over.get("label2id") is None:
            config.label2id = {v: k for k, v in config.id2label.items()}
    if over.get("label2id") is not None:
        config.label2id = {str(k): int(v) for k, v in over["label2id"].items()}
    if "problem_type" in over:
        if over["problem_type"] not in _PROBLEM_TYPES:
            raise ValueError(f"{caller}(problem_type={over['problem_type']!r}): choose one of {_PROBLEM_TYPES}")
        config.problem_type = over["problem_type"]
    return config
