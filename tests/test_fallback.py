"""Families the native engine does not run (issue 18 item 9): DeBERTa-v2 and ALBERT export to an int8 artifact through
the generic encoder rule (hf_fast/models/generic.py), run in ONNX Runtime under backend="auto" with one warning,
are refused with a named reason under backend="native", explain() / `hf-fast info` print the reason, and FastTrainer
prunes them."""
from __future__ import annotations

import json
import warnings

import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
onnx = pytest.importorskip("onnx")

from _export_helpers import SENTENCES, assert_matches_pytorch, calibration_for, encode  # noqa: E402
from _fuzz_helpers import copy_artifact, refresh_sha  # noqa: E402

from hf_fast.export import export  # noqa: E402
from hf_fast.models import generic  # noqa: E402
from hf_fast.runtime.fallback import ENGINE_GRAPH_OPS, foreign_ops  # noqa: E402
from hf_fast.runtime.graph import GraphMatchError  # noqa: E402
from hf_fast.runtime.modeling import TASK_TO_CLASS, load_fast_model  # noqa: E402

ARCHS = ("deberta-v2", "albert")
TASKS = ("text-classification", "question-answering", "token-classification")
AUTO = {"text-classification": "AutoModelForSequenceClassification",
        "question-answering": "AutoModelForQuestionAnswering",
        "token-classification": "AutoModelForTokenClassification"}
# int8 (per-channel weights, per-tensor uint8 activations) against PyTorch fp32: max |difference| over real tokens
# within this fraction of the largest |logit|. Measured on these models (16 sentences): 2.0-8.0%, the same as a BERT
# of the same size and initializer through the engine families' export (2.5-8.1%); a wrong graph is off by ~100%.
REL_TOL = 0.10


def tiny(arch: str, task: str, vocab: int, seed: int = 0, init: float = 0.2):
    """2 layers, hidden 32. DeBERTa-v2 as DeBERTa-v3 ships it (relative attention, c2p + p2c, position buckets, no
    absolute positions, no token types); ALBERT with a factorised embedding (16 -> 32) and one shared layer.
    ``init``: a larger initializer range than transformers' 0.02, so attention is not near-flat and logits are not
    near-ties (the argmax comparison means something)."""
    torch.manual_seed(seed)
    common = dict(vocab_size=vocab, hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64,
                  max_position_embeddings=128, num_labels=2 if task == "question-answering" else 3,
                  initializer_range=init)
    if arch == "deberta-v2":
        cfg = transformers.DebertaV2Config(**common, relative_attention=True, pos_att_type=["p2c", "c2p"],
                                           position_biased_input=False, position_buckets=16,
                                           max_relative_positions=-1, norm_rel_ebd="layer_norm", share_att_key=True,
                                           type_vocab_size=0)
    elif arch == "albert":
        cfg = transformers.AlbertConfig(**common, embedding_size=16)
    else:
        raise ValueError(arch)
    return getattr(transformers, AUTO[task]).from_config(cfg).eval()


@pytest.fixture(scope="module")
def arts(tmp_path_factory, tok):
    root = tmp_path_factory.mktemp("fallback")
    out = {}
    for arch in ARCHS:
        for task in TASKS:
            m = tiny(arch, task, tok.vocab_size)
            if task == "text-classification":
                m.config.id2label = {0: "neg", 1: "pos", 2: "mixed"}
                m.config.label2id = {v: k for k, v in m.config.id2label.items()}
            d = export(m, tok, root / f"{arch}-{task}", calibration_dataset=calibration_for(task), progress=False)
            out[arch, task] = (d, m)
    return out


def _load(d, **kw):
    """Load with the default backend, returning the model and the hf-fast warnings it raised."""
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        fm = load_fast_model(d, **kw)
    return fm, [str(x.message) for x in w if str(x.message).startswith("hf-fast")]


@pytest.mark.parametrize("arch", ARCHS)
def test_export_writes_a_complete_int8_artifact(arts, arch):
    d, m = arts[arch, "token-classification"]
    names = {p.name for p in d.iterdir()}
    assert {"model.onnx", "fast_config.json", "config.json", "tokenizer.json", "tokenizer_config.json",
            "README.md"} <= names
    fc = json.loads((d / "fast_config.json").read_text())
    assert fc["model_type"] == arch and fc["architecture"] == type(m).__name__
    assert fc["native_engine"]["family"] is False and f"model_type {arch!r} is not a family" in \
        fc["native_engine"]["reason"]
    # every encoder Linear runs int8 (2 layers x Q, K, V, attention output, FFN in, FFN out); the head stays fp32
    proto = onnx.load(str(d / "model.onnx"))
    inits = {i.name: i for i in proto.graph.initializer}
    producer = {o: n for n in proto.graph.node for o in n.output}
    int8, fp32 = [], []
    for n in proto.graph.node:
        if n.op_type != "MatMul":
            continue
        dq = producer.get(n.input[1])
        if dq is not None and dq.op_type == "DequantizeLinear" and dq.input[0] in inits:
            assert inits[dq.input[0]].data_type == onnx.TensorProto.INT8
            int8.append(n.name)
        elif n.input[1] in inits:
            fp32.append(n.name)
    assert len(int8) == 12 and fc["quantization"]["num_quantized_matmuls"] == 12
    assert all("/encoder/" in n for n in int8)
    assert any("classifier" in n for n in fp32)  # the token-classification head
    if arch == "albert":  # the embeddings projection sits outside the layer stack: fp32, like embeddings
        assert any("embedding_hidden_mapping_in" in n for n in fp32)
    else:  # DeBERTa's projections of its relative-position table read constants only: left fp32 (ORT folds them)
        assert any("query_proj_1" in n for n in fp32)
    card = (d / "README.md").read_text()
    assert f"It runs in ONNX Runtime (the default backend falls back to it): model_type {arch!r}" in card
    assert "native engine (the default backend)" not in card


@pytest.mark.parametrize("task", TASKS)
@pytest.mark.parametrize("arch", ARCHS)
def test_auto_falls_back_to_onnxruntime_and_matches_pytorch(arts, tok, arch, task):
    d, m = arts[arch, task]
    fm, warned = _load(d)
    assert fm.backend.name == "onnxruntime"
    assert len(warned) == 1 and "\n" not in warned[0], warned  # one warning, one line
    assert f"runs in ONNX Runtime, not the native engine: model_type {arch!r} is not a family" in warned[0]
    assert fm.backend.fallback_reason and arch in fm.backend.fallback_reason
    enc = encode(tok, task, "bert" if "token_type_ids" in fm.input_names else arch, SENTENCES[:8])
    pairs = assert_matches_pytorch(fm, m, enc, REL_TOL)
    if "logits" in pairs:
        r, g = pairs["logits"]
        assert (g.argmax(-1) == r.argmax(-1)).mean() >= 0.95


@pytest.mark.parametrize("arch,op", [("deberta-v2", "Sign"), ("albert", "Pow")])
def test_native_raises_naming_the_family_and_the_op(arts, arch, op):
    d, m = arts[arch, "text-classification"]
    with pytest.raises(GraphMatchError) as ei:
        TASK_TO_CLASS["text-classification"].from_pretrained(d, backend="native")
    msg = str(ei.value)
    assert f"this {arch!r} model ({type(m).__name__}) cannot run in the native engine" in msg
    assert f"model_type {arch!r} is not a family of the native engine" in msg
    assert "the plan stops at:" in msg and f"{op} (/" in msg.split("ops no engine family has: ")[1]
    assert "backend='auto'" in msg


def test_explain_and_info_print_the_reason(arts, capsys):
    from hf_fast.cli import main

    d, _ = arts["albert", "question-answering"]
    fm, _ = _load(d)
    text = fm.explain()
    assert "backend: ONNX Runtime, because model_type 'albert' is not a family of the native engine" in text
    assert "native engine: cannot run this graph:" in text and "Pow (" in text
    assert "attention.query" in text  # ALBERT's shared layer has no ".layer.N.": listed under "-"
    rec = fm.explain(as_dict=True)
    assert rec["fallback_reason"] == fm.backend.fallback_reason
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert main(["info", str(d)]) == 0
    assert "backend: ONNX Runtime, because model_type 'albert' is not a family" in capsys.readouterr().out


def test_transformers_pipeline_on_a_fallback_folder(arts, tok):
    import hf_fast

    d, m = arts["deberta-v2", "text-classification"]
    fm, _ = _load(d)
    plain = transformers.pipeline("text-classification", model=fm, tokenizer=tok)
    enc = tok(SENTENCES[:6], padding=True, return_tensors="pt")
    enc.pop("token_type_ids")
    with torch.no_grad():
        want = [m.config.id2label[int(i)] for i in m(**enc).logits.argmax(-1)]
    assert [o["label"] for o in plain(SENTENCES[:6])] == want
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert [o["label"] for o in hf_fast.pipeline("text-classification", model=str(d))(SENTENCES[:6])] == want


def test_auto_keeps_the_engine_for_its_families(micro_artifacts):
    fm, warned = _load(micro_artifacts["bert"])
    assert fm.backend.name == "native" and warned == []


def test_auto_falls_back_when_the_plan_refuses_a_registry_family(micro_artifacts, tmp_path):
    """A BERT graph the plan does not match (a Sigmoid after the head) runs in ONNX Runtime, and the warning names the
    node; backend='native' raises with the same node."""
    d = copy_artifact(micro_artifacts["bert"], tmp_path / "a")
    model = onnx.load(str(d / "model.onnx"))
    out = model.graph.output[0].name
    for n in model.graph.node:
        n.output[:] = [o + "_pre" if o == out else o for o in n.output]
    model.graph.node.append(onnx.helper.make_node("Sigmoid", [out + "_pre"], [out], name="my_sigmoid"))
    onnx.save(model, str(d / "model.onnx"))
    refresh_sha(d)
    fm, warned = _load(d, pack_cache=False)
    assert fm.backend.name == "onnxruntime" and len(warned) == 1
    assert "the native engine's plan does not match the graph" in warned[0] and "my_sigmoid" in warned[0]
    assert "options pack_cache apply to the native engine only" in warned[0]
    with pytest.raises(GraphMatchError, match=r"'bert' model \(BertForSequenceClassification\).*my_sigmoid.*"
                                              r"ops no engine family has: Sigmoid \(my_sigmoid\)"):
        load_fast_model(d, backend="native", pack_cache=False)


def test_auto_does_not_hide_other_errors(micro_artifacts, tmp_path):
    """Only the plan's refusal falls back: an unreadable model.onnx is an error under auto too."""
    d = copy_artifact(micro_artifacts["bert"], tmp_path / "a")
    (d / "model.onnx").write_bytes(b"not an onnx file")
    with pytest.raises(ValueError, match="cannot parse"):
        load_fast_model(d, verify=False, pack_cache=False)


def test_engine_graph_ops_cover_the_registry_families(micro_artifacts):
    """ENGINE_GRAPH_OPS holds every op of the engine families' exports (so a foreign op really is foreign)."""
    for d in micro_artifacts.values():
        assert foreign_ops(onnx.load(str(d / "model.onnx"))) == {}
    assert "Pow" not in ENGINE_GRAPH_OPS and "Log" not in ENGINE_GRAPH_OPS


def test_generic_export_refusals(tmp_path, tok):
    m = tiny("albert", "text-classification", tok.vocab_size)
    with pytest.raises(ValueError, match="quantize_attention=True needs an engine family.*'albert'"):
        export(m, tok, tmp_path / "q", calibration_dataset=SENTENCES, quantize_attention=True, progress=False)
    gpt = transformers.GPT2ForSequenceClassification(transformers.GPT2Config(n_embd=32, n_layer=1, n_head=2,
                                                                              vocab_size=100))
    with pytest.raises(ValueError, match="unsupported architecture 'gpt2'.*no encoder layer stack"):
        export(gpt, tok, tmp_path / "g", calibration_dataset=SENTENCES, progress=False)


@pytest.mark.parametrize("arch", ARCHS)
def test_fast_trainer_prunes_the_generic_encoder_linears(tmp_path, tok, arch):
    """FastTrainer prunes exactly the generic rule's Linears (not the head, not ALBERT's embeddings projection), to
    exact blocks; the export then reports the same zero blocks in the int8 weights."""
    from test_training_helpers import ToyDataset, train_args

    from hf_fast.blocks import block_sparsity
    from hf_fast.training import FastConfig, FastTrainer

    model = tiny(arch, "text-classification", tok.vocab_size, init=0.02)  # ToyDataset's ids lie in [1, 128)
    tr = FastTrainer(model=model, args=train_args(tmp_path / "run", max_steps=8),
                     fast_config=FastConfig(block="4x1", sparsity=0.5, score="magnitude", scope="layer", end_step=7,
                                            frequency=1),
                     train_dataset=ToyDataset(32))
    layers = tr.pruning_callback._layers
    assert set(layers) == set(generic.encoder_linears(model))
    assert len(layers) == (12 if arch == "deberta-v2" else 6)  # ALBERT: one shared layer
    tr.train()
    for name, mod in layers.items():
        assert block_sparsity(mod.weight.detach(), "4x1") == pytest.approx(0.5), name
    assert (model.classifier.weight != 0).all()
    import hf_fast

    d = hf_fast.save_fast(model, tok, tmp_path / "art", calibration_dataset=SENTENCES, progress=False)
    fc = json.loads((d / "fast_config.json").read_text())
    assert fc["block"] == "4x1" and fc["sparsity"]["overall"] == pytest.approx(0.5, abs=0.02)
    assert (d / "model.safetensors").is_file()  # the folder is also the pruned transformers checkpoint


def test_bench_times_onnxruntime_alone_for_a_fallback_folder(arts, capsys):
    """quick_speed (save_fast(measure_speed=True), the card's figures) and bench skip the engine column of a family
    the engine does not run, instead of failing after the export."""
    from hf_fast.bench import quick_speed

    d, _ = arts["albert", "text-classification"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        rec = quick_speed(d, sequence_length=16, iterations=1)
    assert set(rec["latency_ms"]) == {"onnxruntime"} and rec["speedup"] is None
    assert "no native column (model_type 'albert' is not a family" in capsys.readouterr().out
