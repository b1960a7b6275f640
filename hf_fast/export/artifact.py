"""The fast artifact folder: fast_config.json schema, sparsity report, model card, atomic save, verify.

Layout::

    model.onnx          int8 QDQ graph (the one file ONNX Runtime and the hf-fast engine both run)
    model_fp32.onnx     optional fp32 graph before quantization
    fast_config.json    format_version, task, architecture, shapes, sparsity, quantization, files+sha256
    config.json         the transformers config (id2label, ...)
    tokenizer files     whatever tokenizer.save_pretrained writes
    README.md           model card with the measured sparsity, size, accuracy and speed when known

Only JSON, ONNX and tokenizer text files: no pickle. Saves are atomic: everything is written into a
temporary folder next to ``out_dir`` and swapped in with renames, so an existing artifact is either
the old one or the new one, never a mix.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import secrets
import shutil
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from hf_fast import _atomic

FORMAT_VERSION = 1
# Format version policy (hf_fast/export/README.md, "Format versions"): a change that an older hf-fast would misread
# bumps FORMAT_VERSION, is listed in that README, and registers here {old version: (fc -> fc of old version + 1,
# "what changed")} when the old fast_config can be upgraded in memory; otherwise the loader says "re-export".
MIGRATIONS: dict[int, tuple[Callable[[dict[str, Any]], dict[str, Any]], str]] = {}
LIBRARY = "hf-fast"
FAST_CONFIG_NAME = "fast_config.json"
MODEL_NAME = "model.onnx"
MODEL_FP32_NAME = "model_fp32.onnx"
AUTO_BLOCKS = ("4x1", "1x4")
logger = logging.getLogger(__name__)
# below this fraction of zero weights (int8 rounding alone zeroes ~1-3%) the encoder is reported dense
DENSE_BELOW = 0.05


class ArtifactError(ValueError):
    """A fast artifact folder is missing files, has an unknown format or fails its checksum."""


# ------------------------------------------------------------------ sparsity
def sparsity_report(weights: Mapping[str, np.ndarray], block: str | None = None) -> dict[str, Any]:
    """Zero-block fractions of the encoder Linear weights ([out, in] layout, e.g. the artifact's int8).

    ``block`` given ("4x1", "1x4", ...): fraction of all-zero blocks of that shape per layer and
    ``overall`` (zero blocks / blocks over all layers). ``block=None`` detects it: below 5% zero
    elements the encoder is dense (block null, element sparsity reported); otherwise the one of
    4x1 / 1x4 with the larger overall zero-block fraction ("4x4" when as many 4x4 tiles are zero: the
    zeros come in whole tiles), or "1x1" (unstructured) when neither block shape explains at least half
    of the zero elements.
    Returns {"block": str|None, "sparsity": {layer: frac, ..., "overall": frac}, "element_sparsity": frac}.
    """
    from hf_fast.blocks import TILE_TOLERANCE, block_name, block_nonzero_mask, parse_block

    if not weights:
        raise ValueError("no encoder Linear weights to measure")
    total = sum(w.size for w in weights.values())
    zeros = sum(int(np.count_nonzero(w == 0)) for w in weights.values())
    element = zeros / total

    def measure(b):
        per, zb, nb = {}, 0, 0
        for name, w in weights.items():
            nz = block_nonzero_mask(w, b)
            per[name] = round(1.0 - float(nz.mean()), 6)
            zb += int(nz.size - np.count_nonzero(nz))
            nb += int(nz.size)
        per["overall"] = round(zb / nb, 6)
        return per

    if block is not None:
        b = block_name(block)
        parse_block(b)
        return {"block": b, "sparsity": measure(b), "element_sparsity": round(element, 6)}
    if element < DENSE_BELOW:
        return {"block": None, "sparsity": measure("1x1"), "element_sparsity": round(element, 6)}
    cands = {}
    for b in AUTO_BLOCKS:
        try:
            cands[b] = measure(b)
        except ValueError:  # a block shape that does not divide some weight
            continue
    best = max(cands, key=lambda b: cands[b]["overall"]) if cands else None
    if best is None or cands[best]["overall"] < 0.5 * element:
        return {"block": "1x1", "sparsity": measure("1x1"), "element_sparsity": round(element, 6)}
    # a 4x4 tile is zero only when its four 4x1 blocks are: as many zero tiles as zero 4x1 / 1x4 blocks (less what
    # int8 rounding zeroes inside kept tiles) means the model was pruned in 4x4 tiles (the 4x1 kernel's fast case)
    try:
        tiles = measure("4x4")
        if tiles["overall"] >= cands[best]["overall"] - TILE_TOLERANCE:
            return {"block": "4x4", "sparsity": tiles, "element_sparsity": round(element, 6)}
    except ValueError:  # 4 does not divide some weight
        pass
    return {"block": best, "sparsity": cands[best], "element_sparsity": round(element, 6)}


# ------------------------------------------------------------------ files
_sha_memo: dict[tuple, str] = {}


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    """sha256 of a file; remembered per process by (device, inode, size, mtime_ns, ctime_ns), so verifying
    model.onnx and keying the pack cache on it (runtime/pack_cache.py) read the file once per load."""
    with open(path, "rb") as f:
        st = os.fstat(f.fileno())
        key = (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)
        if key in _sha_memo:
            return _sha_memo[key]
        h = hashlib.sha256()
        for b in iter(lambda: f.read(chunk), b""):
            h.update(b)
    if len(_sha_memo) > 64:
        _sha_memo.clear()
    _sha_memo[key] = h.hexdigest()
    return _sha_memo[key]


def file_entry(path: Path) -> dict[str, Any]:
    return {"sha256": sha256_file(path), "bytes": path.stat().st_size}


def write_json(path: Path, obj: Any) -> None:
    with open(path, "w", encoding="utf-8") as f:
        json.dump(obj, f, indent=2, sort_keys=False)
        f.write("\n")


def check_out_dir(out_dir: Path, overwrite: bool = True) -> Path:
    """Validate an output folder before any work: raise the error a user can act on."""
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise NotADirectoryError(f"output path {str(out_dir)!r} exists and is a file, not a directory")
    if out_dir.is_dir() and any(out_dir.iterdir()):
        if not overwrite:
            raise FileExistsError(f"output directory {str(out_dir)!r} is not empty (pass overwrite=True / "
                                  "--overwrite to replace an existing artifact)")
        if not (out_dir / FAST_CONFIG_NAME).is_file():
            raise FileExistsError(f"output directory {str(out_dir)!r} is not empty and holds no hf-fast artifact "
                                  f"({FAST_CONFIG_NAME} missing): refusing to replace unrelated files; save into a new "
                                  f"or empty folder (e.g. {str(out_dir / 'fast')!r}) or an hf-fast artifact folder")
    parent = out_dir.parent if str(out_dir.parent) else Path(".")
    probe = parent
    while not probe.exists():  # the nearest existing ancestor must be writable
        probe = probe.parent
    if not probe.is_dir():
        raise NotADirectoryError(f"{str(probe)!r} is a file: cannot create {str(out_dir)!r} under it")
    if not os.access(probe, os.W_OK | os.X_OK):
        raise PermissionError(f"no write permission in {str(probe)!r}: cannot create the artifact {str(out_dir)!r}")
    return out_dir


def same_dir(a: str | os.PathLike, b: str | os.PathLike) -> bool:
    """True when both paths name one existing folder (through symlinks, relative paths, bind mounts)."""
    try:
        return os.path.samefile(a, b)
    except OSError:  # one of them does not exist
        return False


def mkdir_unique(parent: Path, prefix: str) -> Path:
    """A new empty folder ``parent/prefix<random>`` created with mode 0o777 minus the umask, as ``save_pretrained``'s
    ``os.makedirs`` does (``tempfile.mkdtemp`` would make it 0700, and the final artifact unreadable to others)."""
    for _ in range(100):
        p = parent / f"{prefix}{secrets.token_hex(4)}"
        try:
            os.mkdir(p, 0o777)
            return p
        except FileExistsError:
            continue
    raise FileExistsError(f"cannot create a unique temporary folder {prefix}* in {str(parent)!r}")


# files a model save writes (hf-fast, transformers, tokenizers, sentence-transformers): replacing a folder of another
# model drops the old ones, so the new folder never mixes two models' files
MODEL_FILES = frozenset({
    MODEL_NAME, MODEL_FP32_NAME, FAST_CONFIG_NAME, "README.md", "config.json", "generation_config.json",
    "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "added_tokens.json", "vocab.txt",
    "vocab.json", "merges.txt", "spiece.model", "sentencepiece.bpe.model", "chat_template.jinja",
    "modules.json", "sentence_bert_config.json", "config_sentence_transformers.json"})


def is_model_file(name: str, module_dirs: Iterable[str] = ()) -> bool:
    """Whether ``name``, in a model folder, is one of the model's own files: MODEL_FILES, transformers' weight files
    (model*.safetensors, pytorch_model*), ONNX graphs (model*.onnx) and the sentence-transformers module folders
    ``module_dirs`` its modules.json names. Anything else (checkpoints, logs, notes, .git) is the user's: when in
    doubt, kept."""
    return (name in MODEL_FILES or name.startswith("pytorch_model") or name in module_dirs
            or (name.startswith("model") and name.endswith((".safetensors", ".safetensors.index.json", ".onnx",
                                                             ".onnx_data"))))


def st_module_dirs(folder: Path) -> set[str]:
    """The module folders (1_Pooling, 2_Normalize, ...) a sentence-transformers folder's modules.json names."""
    try:
        mods = json.loads((Path(folder) / "modules.json").read_text(encoding="utf-8"))
        return {m["path"] for m in mods if isinstance(m, dict) and isinstance(m.get("path"), str) and m["path"]
                and "/" not in m["path"]}
    except (OSError, ValueError, TypeError):
        return set()


def replace_model_folder(new: Path, dest: Path) -> None:
    """Swap the finished folder ``new`` in at ``dest``; an existing ``dest`` keeps what is not one of its model's own
    files (``is_model_file``: a trainer's checkpoints, logs, notes, a clone's .git), hard-linked into ``new`` first,
    so the old folder is whole until the one-step swap (``hf_fast._atomic.swap_dir``)."""
    if dest.is_dir():
        module_dirs = st_module_dirs(dest)
        _atomic.carry_entries(dest, new, drop=lambda name: is_model_file(name, module_dirs))
    _atomic.swap_dir(new, dest)


@contextlib.contextmanager
def atomic_dir(out_dir: Path, overwrite: bool = True) -> Iterator[Path]:
    """Yield a fresh temporary folder next to `out_dir`; on success swap it in, on error delete it.

    Replacing an existing folder keeps what is not a model file there (``is_model_file``: a trainer's checkpoints,
    logs, the user's notes, a Hub clone's .git), hard-linked into the new folder before the swap, so the old folder
    is whole until then. The swap is one step on Linux (a kill leaves the old folder or the new one), two renames
    elsewhere (``hf_fast._atomic.swap_dir``).
    A symlinked `out_dir` is written through: the folder it points to is swapped, the link stays.
    """
    out_dir = check_out_dir(Path(out_dir), overwrite)
    real = Path(os.path.realpath(out_dir))  # also gives "." and "a/.." a name to swap
    parent = real.parent
    try:
        parent.mkdir(parents=True, exist_ok=True)
        tmp = mkdir_unique(parent, f".{real.name}.tmp-")
    except PermissionError as exc:
        raise PermissionError(f"no write permission to create {str(out_dir)!r}: {exc}") from exc
    try:
        yield tmp
        replace_model_folder(tmp, real)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


# ------------------------------------------------------------------ model card
def model_card(fc: Mapping[str, Any], **card_kwargs: Any) -> str:
    """README.md text of the artifact ``fc`` describes: hf_fast.card.build_model_card (huggingface_hub ModelCard,
    metrics as model-index); card_kwargs are its keyword arguments (metrics, speed, datasets, ...)."""
    from hf_fast.card import build_model_card

    return str(build_model_card(fc, **card_kwargs))


# ------------------------------------------------------------------ load / verify
def load_fast_config(artifact_dir, verify: bool = True) -> dict[str, Any]:
    """Read and check fast_config.json; with verify=True also the sha256 of model.onnx."""
    d = Path(artifact_dir)
    if not d.exists():
        raise FileNotFoundError(f"artifact directory {str(d)!r} does not exist")
    if not d.is_dir():
        raise NotADirectoryError(f"{str(d)!r} is not a directory (expected an hf-fast artifact folder)")
    p = d / FAST_CONFIG_NAME
    if not p.is_file():
        raise ArtifactError(f"{str(d)!r} is not an hf-fast artifact: {FAST_CONFIG_NAME} is missing "
                            "(create one with hf_fast.export or `hf-fast export`)")
    try:
        fc = json.loads(p.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ArtifactError(f"{p} is not valid JSON: {exc}") from exc
    if not isinstance(fc, dict) or fc.get("library") != LIBRARY:
        raise ArtifactError(f"{p} was not written by {LIBRARY}")
    fc = _migrate(fc, p)
    for key in ("task", "architecture", "model_type", "files", "inputs", "outputs"):
        if key not in fc:
            raise ArtifactError(f"{p} lacks the required key {key!r}")
    _check_schema(fc, p)
    m = d / MODEL_NAME
    if not m.is_file():
        raise ArtifactError(f"{str(d)!r}: {MODEL_NAME} is missing")
    if verify:
        want = (fc["files"].get(MODEL_NAME) or {}).get("sha256")
        if not want:
            raise ArtifactError(f"{p} records no sha256 for {MODEL_NAME}")
        got = sha256_file(m)
        if got != want:
            raise ArtifactError(f"{m} is corrupted or truncated: sha256 {got[:16]}... does not match "
                                f"{want[:16]}... recorded in {FAST_CONFIG_NAME} (re-export the artifact)")
    return fc


def _migrate(fc: dict[str, Any], p: Path) -> dict[str, Any]:
    """fast_config of an older format_version brought up to FORMAT_VERSION in memory through MIGRATIONS (with a
    warning: the folder is not rewritten); a newer or unknown version raises ArtifactError saying what to do."""
    from hf_fast import __version__

    ver = fc.get("format_version")
    seen = set()
    while _is_version(ver) and ver != FORMAT_VERSION and ver in MIGRATIONS and ver not in seen:
        seen.add(ver)
        migrate, what = MIGRATIONS[ver]
        fc = migrate(fc)
        logger.warning("hf-fast: %s has format_version %s; migrated in memory to format_version %s (%s). Re-export "
                       "the artifact to store the current format.", p, ver, fc.get("format_version"), what)
        ver = fc.get("format_version")
    if ver == FORMAT_VERSION and _is_version(ver):
        return fc
    if _is_version(ver) and ver > FORMAT_VERSION:
        raise ArtifactError(f"{p} has format_version {ver}, written by a newer hf-fast; this hf-fast ({__version__}) "
                            f"reads format_version {FORMAT_VERSION}: upgrade it (pip install -U hf-fast)")
    raise ArtifactError(f"{p} has format_version {ver!r}; this hf-fast ({__version__}) reads format_version "
                        f"{FORMAT_VERSION} and has no migration from it: re-export the model (hf_fast.export or "
                        "`hf-fast export`)")


def _is_version(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _check_schema(fc: dict[str, Any], p: Path) -> None:
    """Types and ranges of every field the loaders read, so a hand-edited or hostile fast_config.json fails
    here with one clear ArtifactError instead of a KeyError/TypeError deep inside a backend."""
    from hf_fast.export.tasks import TASKS

    def bad(key, want):
        raise ArtifactError(f"{p}: {key!r} must be {want}, got {fc.get(key)!r}")

    def is_int(v):
        return isinstance(v, int) and not isinstance(v, bool)

    if fc["task"] not in TASKS:
        bad("task", f"one of {', '.join(TASKS)}")
    for key in ("architecture", "model_type"):
        if not isinstance(fc[key], str) or not fc[key]:
            bad(key, "a non-empty string")
    for key in ("inputs", "outputs"):
        v = fc[key]
        if not isinstance(v, list) or not v or not all(isinstance(x, str) and x for x in v) or len(set(v)) != len(v):
            bad(key, "a non-empty list of distinct names")
    if "input_ids" not in fc["inputs"]:
        bad("inputs", "a list holding 'input_ids'")
    files = fc["files"]
    if not isinstance(files, dict) or not all(isinstance(v, dict) for v in files.values()):
        bad("files", "a mapping {file name: {sha256, bytes}}")
    sha = (files.get(MODEL_NAME) or {}).get("sha256")
    if sha is not None and not isinstance(sha, str):
        bad("files", f"a mapping whose {MODEL_NAME} sha256 is a hex string")
    for key in ("vocab_size", "max_position_embeddings"):
        if not is_int(fc.get(key)) or not 0 < fc[key] <= 2**31:
            bad(key, "a positive int")
    for key, lo in (("max_sequence_length", 1), ("type_vocab_size", 0), ("num_heads", 1), ("num_layers", 1),
                    ("hidden_size", 1), ("intermediate_size", 1), ("num_labels", 1)):
        if fc.get(key) is not None and (not is_int(fc[key]) or not lo <= fc[key] <= 2**31):
            bad(key, f"an int >= {lo}")
    block = fc.get("block")
    if block is not None and (not isinstance(block, str) or block.strip().lower() not in ("dense",) + AUTO_BLOCKS
                              and not _is_block_name(block)):
        bad("block", "null, 'dense' or a block shape like '4x1'")
    sp = fc.get("sparsity", {})
    if not isinstance(sp, dict) or not all(isinstance(v, (int, float)) and not isinstance(v, bool)
                                           and 0.0 <= v <= 1.0 for v in sp.values()):
        bad("sparsity", "a mapping {layer: zero-block fraction in [0, 1]}")
    for key in ("quantization", "metrics"):
        if fc.get(key) is not None and not isinstance(fc[key], dict):
            bad(key, "a mapping")


def _is_block_name(block: str) -> bool:
    try:
        from hf_fast.blocks import parse_block

        parse_block(block)
        return True
    except (ValueError, TypeError):
        return False
