"""Hugging Face Hub: push a fast folder, resolve ``"user/repo"`` to a local snapshot, write the model card.

    from hf_fast.hub import push_fast_folder, resolve_artifact
    push_fast_folder("out/fast", "user/minilm-sst2-fast", token=...)            # create_repo + upload_folder
    local = resolve_artifact("user/minilm-sst2-fast", revision="main")        # snapshot_download (Hub cache)

Configuration is read when a call is made, not when a module is imported: ``HF_ENDPOINT`` (the Hub or a
mirror), ``HF_HUB_OFFLINE`` / ``TRANSFORMERS_OFFLINE`` (no network: only the local cache), and the usual
``token``, ``revision``, ``cache_dir`` arguments. Downloads skip PyTorch weights and pickles
(``*.safetensors``, ``*.bin``, ...): the runtime needs only model.onnx, the JSON configs and the tokenizer.
"""
from __future__ import annotations

import os
import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

# files a hf-fast runtime never needs (weights for PyTorch, pickles, the optional fp32 graph)
ARTIFACT_IGNORE_PATTERNS = ["*.safetensors", "*.bin", "*.pt", "*.pth", "*.ckpt", "*.h5", "*.msgpack", "*.pkl",
                            "*.pickle", "model_fp32.onnx", "training_args*", "optimizer*", "scheduler*", "rng_state*"]
# never uploaded: pickles (torch.save'd training state), hidden files (temp files, a clone's .git) and a trainer's
# checkpoints, which a save keeps in the folder (transformers' Trainer.push_to_hub skips "checkpoint-*" too)
UPLOAD_IGNORE_PATTERNS = ["*.bin", "*.pt", "*.pth", "*.pkl", "*.pickle", "*.ckpt", ".*", "**/.*", "checkpoint-*",
                          "**/checkpoint-*"]

_REPO_ID = re.compile(r"^(?:[A-Za-z0-9][\w\-.]{0,95}/)?[A-Za-z0-9][\w\-.]{0,95}$")
_TRUE = {"1", "on", "yes", "true"}


class HubArtifactNotFoundError(FileNotFoundError):
    """Neither a local artifact folder nor a Hub repo (or revision) that could be reached or found in the cache."""


def hub_endpoint() -> str:
    """``HF_ENDPOINT`` as it is now (huggingface_hub itself reads it once, at import)."""
    env = os.environ.get("HF_ENDPOINT")
    if env:
        return env.rstrip("/")
    from huggingface_hub import constants

    return constants.ENDPOINT


def is_offline() -> bool:
    """True when ``HF_HUB_OFFLINE`` (or ``TRANSFORMERS_OFFLINE``) is set now, or was at import."""
    for k in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"):
        v = os.environ.get(k)
        if v is not None and v.strip().lower() in _TRUE:
            return True
    from huggingface_hub import constants

    return bool(constants.HF_HUB_OFFLINE)  # the client refuses requests if it was offline at import


def looks_like_repo_id(ref: Any) -> bool:
    if not isinstance(ref, str) or ref.startswith((".", "/", "~")) or "\\" in ref or ".." in ref:
        return False
    return bool(_REPO_ID.match(ref))


def resolve_artifact(path_or_repo: str | os.PathLike, *, revision: str | None = None,
                     cache_dir: str | os.PathLike | None = None, token: str | bool | None = None,
                     local_files_only: bool | None = None, force_download: bool = False,
                     artifact_only: bool = True) -> Path:
    """A local folder as it is; a Hub repo id -> the path of its snapshot in the Hub cache.

    ``local_files_only`` defaults to ``HF_HUB_OFFLINE``: then only the cache is looked at.
    ``artifact_only`` skips PyTorch weights and pickles (the runtime does not use them).
    Raises HubArtifactNotFoundError (a FileNotFoundError) when neither exists.
    """
    p = Path(path_or_repo).expanduser()
    if p.exists() or not looks_like_repo_id(os.fspath(path_or_repo)):
        if revision is not None and p.exists():  # transformers ignores it too; say so, in one line
            import warnings

            warnings.warn(f"revision={revision!r} ignored: {str(p)!r} is a local folder, not a Hub repo",
                          UserWarning, stacklevel=3)
        return p
    repo_id = os.fspath(path_or_repo)
    offline = is_offline() if local_files_only is None else bool(local_files_only)
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import (
        EntryNotFoundError,
        HfHubHTTPError,
        LocalEntryNotFoundError,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    try:
        local = snapshot_download(repo_id, revision=revision, cache_dir=os.fspath(cache_dir) if cache_dir else None,
                                  token=token, local_files_only=offline, force_download=force_download,
                                  endpoint=hub_endpoint(),
                                  ignore_patterns=ARTIFACT_IGNORE_PATTERNS if artifact_only else None)
    except RevisionNotFoundError as exc:
        raise HubArtifactNotFoundError(f"Hub repo {repo_id!r} has no revision {revision!r}") from exc
    except RepositoryNotFoundError as exc:
        raise HubArtifactNotFoundError(f"{repo_id!r} is not a local folder, and the Hub ({hub_endpoint()}) has no "
                                       "such repo (or it is private: pass token=...)") from exc
    except LocalEntryNotFoundError as exc:
        why = ("offline mode (HF_HUB_OFFLINE) is on and it is not in the Hub cache" if offline else
               f"the Hub ({hub_endpoint()}) cannot be reached and it is not in the Hub cache")
        raise HubArtifactNotFoundError(f"{repo_id!r} is not a local folder; as a Hub repo id: {why}"
                                       f"{' (cache_dir=' + os.fspath(cache_dir) + ')' if cache_dir else ''}") from exc
    except (EntryNotFoundError, HfHubHTTPError) as exc:
        raise HubArtifactNotFoundError(f"cannot download Hub repo {repo_id!r}: {exc}") from exc
    return Path(local)


# ------------------------------------------------------------------ model card
def write_model_card(folder: str | Path, metrics: Mapping[str, Any] | None = None,
                     speed: Mapping[str, Any] | None = None, base_model: str | None = None,
                     datasets: Iterable[str] = (), license: str | None = None,
                     eval_dataset: str | None = None) -> Path:
    """(Re)write ``README.md`` of a fast folder (hf_fast.card.build_model_card: ModelCard metadata with the
    metrics as model-index, then the card). ``speed`` is hf_fast.bench.quick_speed's result, or None."""
    from hf_fast._atomic import atomic_path
    from hf_fast.card import build_model_card

    folder = Path(folder)
    fc = _read_fc(folder)
    weights = (folder / "model.safetensors").is_file() or (folder / "model.safetensors.index.json").is_file()
    card = build_model_card(fc, metrics=metrics, speed=speed, transformers_weights=weights, base_model=base_model,
                            datasets=datasets, license=license, eval_dataset=eval_dataset)
    p = folder / "README.md"
    with atomic_path(p) as tmp:  # the card is the old one or the new one
        card.save(tmp)
    return p


def _read_fc(folder: Path) -> dict[str, Any]:
    from hf_fast.export.artifact import load_fast_config

    return load_fast_config(folder, verify=False)


# ------------------------------------------------------------------ upload
def push_fast_folder(folder: str | Path, repo_id: str, *, token: str | bool | None = None,
                     private: bool | None = None, revision: str | None = None,
                     commit_message: str | None = None, commit_description: str | None = None,
                     create_pr: bool = False):
    """Create ``repo_id`` if needed (and the branch ``revision``), then upload the folder in one call of
    ``HfApi.upload_folder``. The artifact is verified first (sha256 of model.onnx); pickles are never sent.
    Returns huggingface_hub's CommitInfo."""
    from huggingface_hub import HfApi

    from hf_fast.export.artifact import load_fast_config

    folder = Path(folder)
    load_fast_config(folder, verify=True)
    if not isinstance(repo_id, str) or not looks_like_repo_id(repo_id):
        raise ValueError(f"invalid Hub repo id {repo_id!r} (expected 'namespace/name')")
    if is_offline():
        raise RuntimeError("cannot push to the Hub: offline mode is on (HF_HUB_OFFLINE / TRANSFORMERS_OFFLINE)")
    api = HfApi(endpoint=hub_endpoint(), token=token)
    repo_id = api.create_repo(repo_id, private=private, exist_ok=True, repo_type="model").repo_id or repo_id
    if revision and revision != "main":
        api.create_branch(repo_id, branch=revision, exist_ok=True)
    return api.upload_folder(repo_id=repo_id, folder_path=str(folder), revision=revision, create_pr=create_pr,
                             commit_message=commit_message or "Upload hf-fast model (sparse int8 ONNX + weights)",
                             commit_description=commit_description, ignore_patterns=list(UPLOAD_IGNORE_PATTERNS))
