"""The C engine's model description (hf_engine_model_desc, issue 18 item 6): what the engine does not run is refused
at create time, by name, never run as BERT; the Python mirror (models/spec.py EngineLayer) fills it."""
import dataclasses
import json

import numpy as np
import onnx
import pytest

from hf_fast import native
from hf_fast.models import registry
from hf_fast.models.spec import EngineLayer
from hf_fast.native import ffi, lib
from hf_fast.runtime import engine as engine_mod
from hf_fast.runtime.engine import NativeEngine, model_desc
from hf_fast.runtime.plan import build_plan

DIMS = dict(hidden=32, heads=4, ffn=64, layers=2, vocab=100, max_pos=64, type_vocab=2)


def _create(desc):
    out = ffi.new("hf_engine **")
    rc = lib.hf_engine_create(desc, out)
    if out[0] != ffi.NULL:
        lib.hf_engine_free(out[0])
    return rc


@pytest.mark.parametrize("layer, op", [
    (EngineLayer(activation="swiglu"), "swiglu"),
    (EngineLayer(activation="gelu-tanh"), "gelu-tanh"),
    (EngineLayer(attention_window=128, attention_bias="relative", relative_buckets=32, relative_max_distance=128),
     "sliding-window-attention"),
])
def test_unimplemented_ops_are_refused_at_create_naming_the_op(layer, op):
    d, _ = model_desc(layer, **DIMS)
    assert _create(d) == lib.HF_ENOTIMPL
    assert f"op '{op}'" in ffi.string(lib.hf_last_error()).decode()
    with pytest.raises(NotImplementedError, match=f"op '{op}'.*backend='onnxruntime'"):
        engine_mod._create(d)


def test_what_the_engine_runs_is_accepted():
    for layer in (EngineLayer(), EngineLayer(position="padding-offset", token_types=False),
                  EngineLayer(linear_bias=False), EngineLayer(linear_bias=("qkv", "ffn_in")),
                  EngineLayer(attention_bias="relative", relative_buckets=32, relative_max_distance=128),
                  EngineLayer(norm="pre"), EngineLayer(activation="geglu"), EngineLayer(attention_window=128)):
        d, _ = model_desc(layer, **DIMS)
        assert _create(d) == lib.HF_OK, ffi.string(lib.hf_last_error()).decode()
    # ModernBERT's layer: pre-LN, GeGLU, rotary with a theta per layer, local windows between global layers
    d, _ = model_desc(EngineLayer(norm="pre", activation="geglu", position="rotary", linear_bias=False,
                                  token_types=False), **DIMS, attn_window=[0, 4], rope_theta=[160000.0, 10000.0])
    assert _create(d) == lib.HF_OK, ffi.string(lib.hf_last_error()).decode()
    d, _ = model_desc(EngineLayer(embeddings_project=True), **DIMS, embedding_size=16, embed_proj=True)
    assert _create(d) == lib.HF_OK


@pytest.mark.parametrize("field, value, message", [
    ("norm", 7, "unknown norm position 7"), ("activation", -1, "unknown activation -1"),
    ("position", 9, "unknown position encoding 9"), ("attn_bias", 5, "unknown attention bias 5"),
    ("linear_bias", 1 << 10, "unknown linear_bias bits 0x400"), ("embed_proj", 2, "embed_proj must be 0 or 1"),
    ("isa", lib.HF_ISA_COUNT, f"unknown ISA id {lib.HF_ISA_COUNT}"), ("isa", 7, "unknown ISA id 7"),
    ("isa", -5, "unknown ISA id -5"),
    ("size", 8, "size 8 version .* different builds"), ("version", 99, "version 99.*different builds"),
    ("embedding_size", 16, "embedding_size 16 != hidden 32 needs the embeddings projection"),
    ("attn_bias", lib.HF_ATTN_BIAS_RELATIVE, "relative attention bias with 0 buckets"),
    ("position", lib.HF_POS_ROTARY, "rotary positions need rope_theta"),
])
def test_values_outside_the_description_are_refused(field, value, message):
    d, _ = model_desc(EngineLayer(), **DIMS)
    setattr(d, field, value)
    with pytest.raises(ValueError, match=message):
        native._check(lib.hf_engine_create(d, ffi.new("hf_engine **")), "engine_create")


def test_negative_window_is_refused():
    d, _ = model_desc(EngineLayer(), **DIMS)
    win = ffi.new("int64_t[]", [0, -1])
    d.attn_window = win
    with pytest.raises(ValueError, match="layer 1 attention window -1 < 0"):
        native._check(lib.hf_engine_create(d, ffi.new("hf_engine **")), "engine_create")


def test_desc_fields_mirror_the_engine_layer():
    layer = EngineLayer(norm="post", position="padding-offset", linear_bias=("qkv", "ffn_out"), attention_window=0)
    d, _ = model_desc(layer, isa="ref", **DIMS, embedding_size=16, embed_proj=True)
    assert (d.norm, d.activation, d.position, d.attn_bias) == (lib.HF_NORM_POST, lib.HF_ACT_GELU,
                                                               lib.HF_POS_PADDING_OFFSET, lib.HF_ATTN_BIAS_NONE)
    assert d.linear_bias == lib.HF_BIAS_QKV | lib.HF_BIAS_FFN_OUT
    assert d.isa == lib.HF_ISA_REF and d.embedding_size == 16 and d.embed_proj == 1 and d.attn_window == ffi.NULL
    assert d.size == ffi.sizeof("hf_engine_model_desc") and d.version == lib.HF_ENGINE_DESC_VERSION
    d, keep = model_desc(EngineLayer(attention_window=128), **DIMS)
    assert [d.attn_window[i] for i in range(DIMS["layers"])] == [128, 128]
    with pytest.raises(ValueError, match="attention_window"):
        EngineLayer(attention_window=-1)
    with pytest.raises(ValueError, match="linear_bias"):
        EngineLayer(linear_bias=("query",))
    with pytest.raises(ValueError, match="position='alibi'"):
        EngineLayer(position="alibi")
    d, _ = model_desc(EngineLayer(attention_bias="relative", relative_buckets=32, relative_max_distance=128), **DIMS)
    assert (d.attn_bias, d.rel_buckets, d.rel_max_distance) == (lib.HF_ATTN_BIAS_RELATIVE, 32, 128)
    with pytest.raises(ValueError, match="relative_buckets a multiple of 4"):
        EngineLayer(attention_bias="relative")


def test_relative_bias_table_is_required_and_checked():
    """An engine with HF_ATTN_BIAS_RELATIVE does not run before its table is set; the table must be finite and is
    refused by an engine created without the bias."""
    layer = EngineLayer(attention_bias="relative", relative_buckets=32, relative_max_distance=128)
    e = engine_mod._create(model_desc(layer, **DIMS)[0])
    bad = np.zeros((32, 4), np.float32)
    bad[3, 1] = np.nan
    with pytest.raises(ValueError, match="table value 13 is not finite"):
        native._check(lib.hf_engine_set_attention_bias(e, ffi.cast("float *", bad.ctypes.data)), "bias")
    plain = engine_mod._create(model_desc(EngineLayer(), **DIMS)[0])
    with pytest.raises(ValueError, match="created without a relative attention bias"):
        native._check(lib.hf_engine_set_attention_bias(plain, ffi.cast("float *", bad.ctypes.data)), "bias")
    ids = np.zeros((1, 4), np.int64)
    out = np.zeros(4 * 32, np.float32)
    with pytest.raises(Exception, match="not fully built"):
        native._check(lib.hf_engine_run(e, 1, 4, ffi.cast("int64_t *", ids.ctypes.data), ffi.NULL, ffi.NULL,
                                        ffi.cast("float *", out.ctypes.data), out.size), "run")


def test_projection_must_be_set_before_a_run_and_only_when_described():
    d, _ = model_desc(EngineLayer(), **DIMS)
    out = ffi.new("hf_engine **")
    native._check(lib.hf_engine_create(d, out), "create")
    e = ffi.gc(out[0], lib.hf_engine_free)
    w = np.zeros((32, 32), np.float32)
    with pytest.raises(ValueError, match="created without embed_proj"):
        native._check(lib.hf_engine_set_embeddings_project(e, ffi.cast("float *", w.ctypes.data), ffi.NULL), "p")


@pytest.fixture(scope="module")
def bert_artifact(tmp_path_factory, tok):
    from _export_helpers import calibration_for, tiny_model

    import hf_fast

    m = tiny_model("bert", "text-classification", tok.vocab_size, seed=5)
    return hf_fast.export(m, tok, tmp_path_factory.mktemp("desc") / "bert",
                          calibration_dataset=calibration_for("text-classification"), progress=False)


@pytest.mark.parametrize("change, op", [({"norm": "pre"}, "pre-LN"), ({"activation": "geglu"}, "geglu"),
                                        ({"position": "rotary"}, "rotary")])
def test_a_family_declaring_an_unimplemented_op_is_never_run_as_bert(bert_artifact, monkeypatch, change, op):
    """A registry entry whose EngineLayer asks for an op the engine lacks: the engine refuses it by name even though
    the graph matched the BERT plan."""
    fc = json.loads((bert_artifact / "fast_config.json").read_text())
    plan = build_plan(onnx.load(str(bert_artifact / "model.onnx")), fc["num_heads"], fc["model_type"], fc["task"])
    fam = registry.get(fc["model_type"])
    changed = dataclasses.replace(fam, engine=dataclasses.replace(fam.engine, **change))
    monkeypatch.setattr(registry, "find", lambda t: changed if t == fam.model_type else None)
    with pytest.raises(NotImplementedError, match=f"op '{op}'"):
        NativeEngine(plan)
    monkeypatch.undo()
    assert NativeEngine(plan).layer_desc == fam.engine  # the unchanged family runs


def test_auto_backend_falls_back_when_the_engine_lacks_a_declared_op(bert_artifact, monkeypatch):
    """backend='auto' on a family whose declared op the engine has no kernel for: ONNX Runtime, one warning naming
    the op, the reason kept in fallback_reason (backend='native' raises)."""
    from hf_fast.runtime import FastModelForSequenceClassification

    fam = registry.get("bert")
    changed = dataclasses.replace(fam, engine=dataclasses.replace(fam.engine, norm="pre"))
    monkeypatch.setattr(registry, "find", lambda t: changed if t == fam.model_type else None)
    with pytest.warns(UserWarning, match="runs in ONNX Runtime.*op 'pre-LN'"):
        m = FastModelForSequenceClassification.from_pretrained(bert_artifact)
    assert "pre-LN" in m.backend.fallback_reason
    with pytest.raises(NotImplementedError, match="op 'pre-LN'"):
        FastModelForSequenceClassification.from_pretrained(bert_artifact, backend="native")
