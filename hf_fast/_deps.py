"""Optional dependencies: `pip install hf-fast` serves models; training and export need `hf-fast[train]`.

The serving path (hf_fast, hf_fast.runtime, hf_fast.native, hf_fast.pipelines, hf_fast.hub) never imports torch at
module level; the training / export entry points call `require_train` first, so a runtime-only install fails with
an ImportError that names the extra instead of a bare "No module named 'torch'".
"""
from __future__ import annotations

import importlib.util

TRAIN_EXTRA = "pip install 'hf-fast[train]'"
# what the [train] extra adds (setup.cfg); export needs only torch (torch.onnx.export)
TRAIN_MODULES = ("torch", "accelerate", "datasets")


def missing(modules) -> list[str]:
    """The modules of `modules` that are not installed (found without importing them)."""
    return [m for m in modules if importlib.util.find_spec(m) is None]


def require_train(feature: str, modules=TRAIN_MODULES) -> None:
    """Raise ImportError naming `feature`, the missing modules and the install command when any is missing."""
    gone = missing(modules)
    if gone:
        raise ImportError(f"{feature} needs {', '.join(gone)}, which a runtime-only install of hf-fast does not "
                          f"include: {TRAIN_EXTRA}", name=gone[0])


_HAS_TORCH: bool | None = None


def torch_or_none():
    """torch when it is installed (imported on first use), else None: outputs are numpy arrays then."""
    global _HAS_TORCH
    if _HAS_TORCH is None:  # looked up once: a find_spec miss scans sys.path
        _HAS_TORCH = importlib.util.find_spec("torch") is not None
    if not _HAS_TORCH:
        return None
    import torch

    return torch
