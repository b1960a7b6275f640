"""The packed-weight cache (hf_fast/runtime/pack_cache.py) and the C save/restore of a packed Linear under it:
a second load restores instead of parsing and packing, and any unusable entry is rebuilt, never trusted."""
from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

from hf_fast import native
from hf_fast.runtime import pack_cache

IDS = np.array([[101, 2023, 2143, 2001, 2307, 102], [101, 6659, 102, 0, 0, 0]], dtype=np.int64)
MASK = (IDS != 0).astype(np.int64)


# ---------------------------------------------------------------- C: hf_linear_serialize / deserialize
@pytest.mark.parametrize("isa", native.supported_isas())
@pytest.mark.parametrize("block", ["dense", "4x1", "1x4"])
@pytest.mark.parametrize("bias", [True, False])
def test_packed_linear_round_trip_is_bit_exact(isa, block, bias):
    rng = np.random.default_rng(7)
    w = rng.integers(-128, 128, size=(36, 72), dtype=np.int8)
    w[rng.random(w.shape) < 0.7] = 0
    p = native.PackedLinear(w, rng.random(36, dtype=np.float32) + 0.01,
                            rng.standard_normal(36).astype(np.float32) if bias else None, block=block, isa=isa)
    q = native.PackedLinear.from_bytes(p.to_bytes())
    assert (q.shape, q.block, q.isa, q.kernel, q.nbytes, q.kept_blocks) == (p.shape, p.block, p.isa, p.kernel,
                                                                           p.nbytes, p.kept_blocks)
    a = rng.integers(0, 256, size=(9, 72), dtype=np.uint8)
    assert np.array_equal(q.forward(a, 0.02, 7, gelu=True), p.forward(a, 0.02, 7, gelu=True))
    assert np.array_equal(q.forward(a, 0.02, 7, out_quant=(0.05, 3)), p.forward(a, 0.02, 7, out_quant=(0.05, 3)))


def _blob(block="4x1"):
    rng = np.random.default_rng(1)
    w = rng.integers(-128, 128, size=(16, 32), dtype=np.int8)
    return native.PackedLinear(w, np.ones(16, np.float32), np.zeros(16, np.float32), block=block).to_bytes()


@pytest.mark.parametrize("mangle", ["truncated", "padded", "magic", "shape", "empty"])
def test_malformed_packed_bytes_are_refused(mangle):
    b = bytearray(_blob())
    if mangle == "truncated":
        b = b[:-3]
    elif mangle == "padded":
        b += b"\0" * 8
    elif mangle == "magic":
        b[0] ^= 0xFF
    elif mangle == "shape":
        b[4 * 8] += 1  # N
    else:
        b = b""
    with pytest.raises(native.NativeError, match="linear_deserialize"):
        native.PackedLinear.from_bytes(bytes(b))


def test_bytes_packed_for_an_isa_the_cpu_lacks_are_refused():
    b = bytearray(_blob())
    missing = [i for i, n in enumerate(native.ISA_NAMES) if n not in native.supported_isas()]
    if not missing:
        pytest.skip("this CPU runs every ISA the library has")
    b[8:16] = missing[0].to_bytes(8, "little")
    with pytest.raises(native.UnsupportedISAError):
        native.PackedLinear.from_bytes(bytes(b))


# ---------------------------------------------------------------- the cache behind from_pretrained
@pytest.fixture(scope="module")
def artifact(tmp_path_factory):
    from _export_helpers import SENTENCES, tiny_model, tokenizer

    from hf_fast.export import export

    tok = tokenizer()
    out = tmp_path_factory.mktemp("pack_cache") / "art"
    export(tiny_model("bert", "text-classification", tok.vocab_size, seed=3), tok, out,
           calibration_dataset=SENTENCES, task="text-classification", progress=False)
    return out


@pytest.fixture()
def cache(tmp_path, monkeypatch):
    d = tmp_path / "cache"
    monkeypatch.setenv("HF_FAST_CACHE_DIR", str(d))
    monkeypatch.delenv("HF_FAST_PACK_CACHE", raising=False)
    return d / "packed"


def _load(path, **kw):
    from hf_fast.runtime.modeling import FastModelForSequenceClassification

    m = FastModelForSequenceClassification.from_pretrained(path, **kw)
    return m, m.run(IDS, MASK)["logits"]


def _entries(cache_dir: Path) -> list[Path]:
    return sorted(cache_dir.glob("*.safetensors"))


def test_second_load_restores_instead_of_parsing_and_packing(artifact, cache, monkeypatch):
    import onnx

    import hf_fast.runtime.engine as engine

    m0, ref = _load(artifact, pack_cache=False)
    assert m0.backend.pack_cache == "off" and not cache.exists()
    before = sorted(p.name for p in artifact.iterdir())
    m1, first = _load(artifact)
    assert m1.backend.pack_cache == "miss" and len(_entries(cache)) == 1
    assert sorted(p.name for p in artifact.iterdir()) == before  # nothing written into the artifact

    def no(*a, **k):
        raise AssertionError("a cached load parsed the ONNX graph or packed a Linear")

    monkeypatch.setattr(onnx, "load", no)
    monkeypatch.setattr(engine, "build_plan", no)
    monkeypatch.setattr(native.PackedLinear, "__init__", no)
    m2, second = _load(artifact)
    assert m2.backend.pack_cache == "hit"
    assert np.array_equal(first, ref) and np.array_equal(second, ref)  # bit for bit
    kernels = [[p.kernel for p in m.backend.engine.packed.values()] for m in (m1, m2)]
    assert kernels[0] == kernels[1]


def _corrupt_payload(f: Path):
    b = bytearray(f.read_bytes())
    b[-100] ^= 0x01
    f.write_bytes(bytes(b))


def _truncate(f: Path):
    f.write_bytes(f.read_bytes()[: f.stat().st_size // 2])


def _edit_plan(f: Path):
    """A changed zero point in the JSON plan, same length, checksum untouched."""
    b = f.read_bytes()
    n = int.from_bytes(b[:8], "little")
    header = b[8:8 + n].decode()
    i = header.index('zero_point\\": ') + len('zero_point\\": ')
    digit = header[i]
    header = header[:i] + ("1" if digit != "1" else "2") + header[i + 1:]
    f.write_bytes(b[:8] + header.encode() + b[8 + n:])


def _forge_checksum(f: Path):
    """Corrupt a packed Linear's header and recompute the file checksum: the C checks must still refuse it."""
    b = bytearray(f.read_bytes())
    n = int.from_bytes(b[:8], "little")
    header = json.loads(b[8:8 + n])
    lo, _ = header["packed.layers.0.qkv"]["data_offsets"]
    b[8 + n + lo] ^= 0xFF  # the magic
    old = header["__metadata__"]["checksum"]
    import hashlib

    blank = bytes(b).replace(old.encode(), pack_cache._BLANK.encode(), 1)
    f.write_bytes(bytes(b).replace(old.encode(), hashlib.sha256(blank).hexdigest().encode(), 1))


@pytest.mark.parametrize("damage", [_corrupt_payload, _truncate, _edit_plan, _forge_checksum,
                                    lambda f: f.write_bytes(b"")],
                         ids=["bitflip", "truncated", "edited-plan", "forged-checksum", "empty"])
def test_unusable_cache_is_rebuilt_not_trusted(artifact, cache, damage, caplog):
    _, ref = _load(artifact, pack_cache=False)
    _load(artifact)
    (entry,) = _entries(cache)
    damage(entry)
    with caplog.at_level("WARNING"):
        m, out = _load(artifact)
    assert m.backend.pack_cache == "rebuilt"
    assert "rebuilding the packed-weight cache" in caplog.text
    assert np.array_equal(out, ref)
    m, out = _load(artifact)  # the rebuilt entry is good
    assert m.backend.pack_cache == "hit" and np.array_equal(out, ref)


def test_engine_version_model_and_isa_are_part_of_the_key(artifact, cache, monkeypatch, tmp_path):
    import shutil

    _, ref = _load(artifact)
    (entry,) = _entries(cache)
    # another engine version (native library or plan/engine code): a new entry, the stale one of this model removed
    monkeypatch.setattr(pack_cache, "_engine_version", "0" * 64)
    m, out = _load(artifact)
    assert m.backend.pack_cache == "miss" and np.array_equal(out, ref)
    assert not entry.exists() and len(_entries(cache)) == 1
    monkeypatch.undo()
    monkeypatch.setenv("HF_FAST_CACHE_DIR", str(cache.parent))
    # another model file (same graph, other bytes): its own entry
    import onnx

    other = tmp_path / "other"
    shutil.copytree(artifact, other)
    model = onnx.load(str(other / "model.onnx"))
    model.doc_string = "another file"
    onnx.save(model, str(other / "model.onnx"))
    m, out = _load(other, verify=False)
    assert m.backend.pack_cache == "miss" and np.array_equal(out, ref) and len(_entries(cache)) == 2
    # an entry copied under another key's name is refused by the key stored inside it
    key = pack_cache.make_key("c" * 64, native.active_isa(), None, 4)
    pack_cache.path_for(key).write_bytes(_entries(cache)[0].read_bytes())
    with pytest.raises(pack_cache.CacheError, match="another model_sha256"):
        pack_cache.load(key)
    # another ISA: packed separately
    if "ref" in native.supported_isas() and native.active_isa() != "ref":
        m, out = _load(artifact, isa="ref")
        assert m.backend.pack_cache == "miss" and {p.isa for p in m.backend.engine.packed.values()} == {"ref"}


def test_unwritable_cache_and_switch_off(artifact, tmp_path, monkeypatch):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    monkeypatch.setenv("HF_FAST_CACHE_DIR", str(blocker))
    m, out = _load(artifact)
    assert m.backend.pack_cache == "unwritable"
    monkeypatch.setenv("HF_FAST_CACHE_DIR", str(tmp_path / "c"))
    monkeypatch.setenv("HF_FAST_PACK_CACHE", "0")
    m, out2 = _load(artifact)
    assert m.backend.pack_cache == "off" and not (tmp_path / "c").exists()
    assert np.array_equal(out, out2)


def test_eviction_keeps_the_folder_under_its_cap(artifact, cache, monkeypatch):
    _load(artifact)
    (entry,) = _entries(cache)
    old = cache / ("f" * 16 + "-" + "0" * 16 + ".safetensors")
    old.write_bytes(b"\0" * 1000)
    os.utime(old, (0, 0))  # least recently used
    mine = cache / "model.safetensors"  # not a cache entry (HF_FAST_CACHE_DIR may be a shared folder): never evicted
    mine.write_bytes(b"\0" * 1000)
    os.utime(mine, (0, 0))
    monkeypatch.setenv("HF_FAST_PACK_CACHE_MAX_MB", str(entry.stat().st_size / 2**20))
    monkeypatch.setattr(pack_cache, "_engine_version", "1" * 64)
    _load(artifact)
    assert not old.exists() and len(_entries(cache)) == 2 and mine.exists()
