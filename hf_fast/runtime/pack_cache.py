"""On-disk cache of the native engine's packed weights, so a second load neither parses model.onnx nor packs.

A first load parses the ONNX graph, matches the encoder (plan.py) and packs every Linear for this CPU's kernels
(engine.py): ~1.5 s for an 80%-sparse DistilBERT-base (benchmarks/cold_start.py). The result goes into one
safetensors file (no pickle): the plan's arrays (embeddings, LayerNorms, head, scales) as tensors, each packed
Linear as its `hf_linear_serialize` bytes, and the plan's structure plus the key as JSON metadata.

Trust: the file is keyed and checked, never trusted.
- Key (file name and metadata, compared on load): sha256 of model.onnx, the engine version (sha256 of the native
  library file and of the Python modules that build the plan and choose the kernels, and the hf-fast version),
  the ISA the weights are packed for, the artifact's block shape and the cache format.
- Checksum: sha256 over the metadata and the tensor bytes; a truncated, corrupt or edited file fails it and is
  rebuilt (with a warning). The C side checks each packed Linear's header and sizes again.
- Written atomically (temporary file + os.replace) into $HF_FAST_CACHE_DIR/packed (default
  $XDG_CACHE_HOME/hf_fast/packed, i.e. ~/.cache/hf_fast/packed), never into the artifact folder, which may be
  read-only (the Hub cache). An unwritable cache only costs the speed-up. HF_FAST_PACK_CACHE=0 turns it off.
Entries of the same model.onnx for another engine version are deleted when a new one is written, and the least
recently used entries when the folder outgrows HF_FAST_PACK_CACHE_MAX_MB (default 4096).
"""
from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import logging
import os
import sys
from pathlib import Path
from typing import Any

import numpy as np

from hf_fast import _atomic
from hf_fast.export.artifact import sha256_file
from hf_fast.runtime import graph, plan

logger = logging.getLogger(__name__)

FORMAT = 1
SUFFIX = ".safetensors"
ENTRY_GLOB = "[0-9a-f]" * 16 + "-" + "[0-9a-f]" * 16 + SUFFIX  # the names path_for gives
_PLAN_TYPES = {c.__name__: c for c in (plan.EncoderPlan, plan.EmbeddingPlan, plan.LayerPlan, plan.LinearPlan,
                                       plan.LayerNormPlan, plan.AttentionQuant, plan.HeadOp, graph.FakeQuant,
                                       plan.AttentionBiasPlan)}
# the modules whose code decides what gets packed and how (their sha256 is part of the engine version)
_ENGINE_MODULES = ("hf_fast.runtime.graph", "hf_fast.runtime.plan", "hf_fast.runtime.engine",
                   "hf_fast.runtime.pack_cache", "hf_fast.native._loader", "hf_fast.native.kernels")


class CacheError(ValueError):
    """A cache file that is not usable (corrupt, truncated, tampered with, or for another key)."""


def enabled(flag: bool | None = None) -> bool:
    if flag is not None:
        return bool(flag)
    return os.environ.get("HF_FAST_PACK_CACHE", "1").strip().lower() not in ("0", "false", "no", "off")


def cache_dir() -> Path:
    base = os.environ.get("HF_FAST_CACHE_DIR") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache"), "hf_fast")
    return Path(base) / "packed"


_engine_version: str | None = None


def engine_version() -> str:
    """sha256 over the native library file, the plan/engine modules' sources and the hf-fast version."""
    global _engine_version
    if _engine_version is None:
        import hf_fast

        h = hashlib.sha256(f"hf_fast {hf_fast.__version__} format {FORMAT}".encode())
        files = [sys.modules["hf_fast._native"].__file__] + [sys.modules[m].__file__ for m in _ENGINE_MODULES
                                                             if m in sys.modules]
        for f in files:
            h.update(sha256_file(f).encode())
        _engine_version = h.hexdigest()
    return _engine_version


def make_key(model_sha256: str, isa: str, block: str | None, num_heads: int) -> dict[str, str]:
    return {"format": str(FORMAT), "model_sha256": model_sha256, "engine": engine_version(), "isa": isa,
            "block": str(block), "num_heads": str(num_heads)}


def path_for(key: dict[str, str]) -> Path:
    k = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()
    return cache_dir() / f"{key['model_sha256'][:16]}-{k[:16]}{SUFFIX}"


# ---------------------------------------------------------------- plan <-> JSON + tensors
def _encode(obj: Any, tensors: dict[str, np.ndarray], where: str) -> Any:
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    if isinstance(obj, np.ndarray):
        name = f"plan.{len(tensors)}"
        tensors[name] = np.ascontiguousarray(obj)
        return {"__tensor__": name}
    if isinstance(obj, (np.integer, np.floating)):
        return obj.item()
    if dataclasses.is_dataclass(obj) and type(obj).__name__ in _PLAN_TYPES:
        out = {"__type__": type(obj).__name__}
        for f in dataclasses.fields(obj):
            # Linear weights are cached packed (hf_linear_serialize), not as the int8 matrix
            value = None if isinstance(obj, plan.LinearPlan) and f.name == "weight" else getattr(obj, f.name)
            out[f.name] = _encode(value, tensors, f"{where}.{f.name}")
        return out
    if isinstance(obj, tuple):
        return {"__tuple__": [_encode(v, tensors, where) for v in obj]}
    if isinstance(obj, list):
        return [_encode(v, tensors, f"{where}[]") for v in obj]
    if isinstance(obj, dict) and all(isinstance(k, str) and not k.startswith("__") for k in obj):
        return {k: _encode(v, tensors, f"{where}.{k}") for k, v in obj.items()}
    raise TypeError(f"pack cache: cannot store {where} of type {type(obj).__name__}")


def _decode(obj: Any, tensors: dict[str, np.ndarray]) -> Any:
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    if isinstance(obj, list):
        return [_decode(v, tensors) for v in obj]
    if not isinstance(obj, dict):
        raise CacheError(f"unexpected {type(obj).__name__} in the plan")
    if "__tensor__" in obj:
        if obj["__tensor__"] not in tensors:
            raise CacheError(f"tensor {obj['__tensor__']!r} is missing")
        return tensors[obj["__tensor__"]]
    if "__tuple__" in obj:
        return tuple(_decode(v, tensors) for v in obj["__tuple__"])
    if "__type__" in obj:
        cls = _PLAN_TYPES.get(obj["__type__"])
        if cls is None:
            raise CacheError(f"unknown plan type {obj['__type__']!r}")
        try:
            return cls(**{k: _decode(v, tensors) for k, v in obj.items() if k != "__type__"})
        except TypeError as exc:
            raise CacheError(f"bad {obj['__type__']} fields: {exc}") from exc
    return {k: _decode(v, tensors) for k, v in obj.items()}


_BLANK = "#" * 64  # not hex: cannot collide with a key field


def _checksum(data: bytes, n: int, checksum: str) -> str:
    """sha256 of the whole file (header with tensor offsets, metadata and tensor bytes) with the checksum's own
    value blanked."""
    if len(checksum) != 64 or not all(c in "0123456789abcdef" for c in checksum):
        raise CacheError("malformed checksum")
    header = bytes(data[8:8 + n])
    if header.count(checksum.encode()) != 1:
        raise CacheError("checksum not found once in the header")
    h = hashlib.sha256(data[:8])
    h.update(header.replace(checksum.encode(), _BLANK.encode()))
    h.update(memoryview(data)[8 + n:])
    return h.hexdigest()


# ---------------------------------------------------------------- save / load
def save(key: dict[str, str], encoder_plan, packed: dict[str, Any]) -> Path | None:
    """Write the cache entry for `key` (plan with its arrays, packed Linears by name) atomically; None when the
    cache folder is not writable (logged, not raised: the cache only saves time)."""
    from safetensors.numpy import save as st_save

    tensors: dict[str, np.ndarray] = {}
    tree = _encode(encoder_plan, tensors, "plan")
    alternatives = {}  # {name: tokens}: the Linears also packed for the other kernel (PackedLinear.set_alternative)
    for name, p in packed.items():
        tensors[f"packed.{name}"] = np.frombuffer(p.to_bytes(), dtype=np.uint8)
        if getattr(p, "alternative", None) is not None:
            tensors[f"alternative.{name}"] = np.frombuffer(p.alternative.to_bytes(), dtype=np.uint8)
            alternatives[name] = p.sparse_rows
    meta = {**key, "plan": json.dumps(tree), "packed": json.dumps(sorted(packed)),
            "alternatives": json.dumps(alternatives, sort_keys=True)}
    # the checksum covers the whole file: sum the file with a blank of the same length, then patch it in
    data = st_save(tensors, metadata={**meta, "checksum": _BLANK})
    n = int.from_bytes(data[:8], "little")
    header = data[8:8 + n]
    if header.count(_BLANK.encode()) != 1:
        raise RuntimeError("pack cache: the checksum placeholder is not unique in the header")
    data = data[:8] + header.replace(_BLANK.encode(), hashlib.sha256(data).hexdigest().encode()) + data[8 + n:]
    dest = path_for(key)
    try:
        _atomic.write_bytes(dest, data)
        for old in dest.parent.glob(f"{key['model_sha256'][:16]}-*{SUFFIX}"):  # other engine versions
            if old != dest:
                with contextlib.suppress(OSError):
                    old.unlink()
        _evict(dest.parent, keep=dest)
    except OSError as exc:
        logger.warning("hf-fast: cannot write the packed-weight cache %s (%s); loads stay uncached", dest, exc)
        return None
    return dest


def max_bytes() -> int:
    """Size cap of the cache folder: HF_FAST_PACK_CACHE_MAX_MB (default 4096)."""
    try:
        return int(float(os.environ.get("HF_FAST_PACK_CACHE_MAX_MB", "4096")) * 2**20)
    except ValueError:
        return 4096 * 2**20


def _evict(folder: Path, keep: Path) -> None:
    """Delete the least recently used entries (loads touch their file) until the folder fits max_bytes()."""
    entries = []
    for f in folder.glob(ENTRY_GLOB):  # cache entries only: HF_FAST_CACHE_DIR may name a folder holding other files
        with contextlib.suppress(OSError):
            st = f.stat()
            entries.append((st.st_mtime, st.st_size, f))
    total, cap = sum(e[1] for e in entries), max_bytes()
    for _, size, f in sorted(entries, key=lambda e: e[0]):
        if total <= cap:
            break
        if f != keep:
            with contextlib.suppress(OSError):
                f.unlink()
                total -= size


_DTYPES = {"F32": np.float32, "F64": np.float64, "I8": np.int8, "U8": np.uint8, "I32": np.int32, "I64": np.int64,
           "BOOL": np.bool_}


def _tensor_views(header: dict, payload: memoryview) -> dict[str, np.ndarray]:
    """Read-only numpy views of the safetensors payload (no copy: safetensors.numpy.load copies every tensor, which
    cost more than the rest of a cached load); bounds, sizes and dtypes checked."""
    out = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        dtype = np.dtype(_DTYPES[info["dtype"]])
        shape = tuple(int(d) for d in info["shape"])
        lo, hi = (int(x) for x in info["data_offsets"])
        if not 0 <= lo <= hi <= len(payload) or hi - lo != int(np.prod(shape, dtype=np.int64)) * dtype.itemsize:
            raise ValueError(f"tensor {name!r}: offsets [{lo}, {hi}) do not fit its shape or the file")
        a = np.frombuffer(payload[lo:hi], dtype=dtype).reshape(shape)
        out[name] = a if a.ctypes.data % dtype.itemsize == 0 else a.copy()  # the C side reads aligned values
    return out


def load(key: dict[str, str]):
    """(plan, {name: packed bytes as a uint8 array}) from the entry for `key`; None when there is none.
    Raises CacheError when the entry exists but is unusable (the caller rebuilds it)."""
    p = path_for(key)
    try:
        data = p.read_bytes()
    except (FileNotFoundError, NotADirectoryError):
        return None
    except OSError as exc:
        raise CacheError(f"cannot read {p}: {exc}") from exc
    if len(data) < 8:
        raise CacheError(f"{p} is truncated")
    n = int.from_bytes(data[:8], "little")
    if n <= 0 or 8 + n > len(data):
        raise CacheError(f"{p} is truncated (header of {n} bytes)")
    try:
        header = json.loads(data[8:8 + n])
        meta = header["__metadata__"]
    except (ValueError, KeyError, TypeError) as exc:
        raise CacheError(f"{p}: unreadable header ({exc})") from exc
    if not isinstance(meta, dict) or not all(isinstance(v, str) for v in meta.values()):
        raise CacheError(f"{p}: bad metadata")
    stale = [k for k in key if meta.get(k) != key[k]]
    if stale:
        raise CacheError(f"{p} was written for another {', '.join(stale)}")
    if _checksum(data, n, meta.get("checksum", "")) != meta["checksum"]:
        raise CacheError(f"{p} fails its checksum (corrupt, truncated or edited)")
    try:
        tensors = _tensor_views(header, memoryview(data)[8 + n:])
        tree = json.loads(meta["plan"])
        names = json.loads(meta["packed"])
        alternatives = json.loads(meta.get("alternatives", "{}"))
        if not isinstance(alternatives, dict) or not all(
                n in names and isinstance(r, int) and r >= 1 and f"alternative.{n}" in tensors
                for n, r in alternatives.items()):
            raise ValueError("bad alternatives")
    except (ValueError, KeyError, TypeError) as exc:
        raise CacheError(f"{p}: {exc}") from exc
    encoder_plan = _decode(tree, tensors)
    if not isinstance(encoder_plan, plan.EncoderPlan):
        raise CacheError(f"{p} holds no encoder plan")
    with contextlib.suppress(OSError):
        os.utime(p)  # most recently used (eviction order)
    packed = {}
    for name in names:
        if f"packed.{name}" not in tensors:
            raise CacheError(f"{p}: packed Linear {name!r} is missing")
        packed[name] = tensors[f"packed.{name}"]
        if name in alternatives:  # (bytes, bytes of the other kernel's packing, tokens from which the sparse runs)
            packed[name] = (packed[name], tensors[f"alternative.{name}"], alternatives[name])
    return encoder_plan, packed
