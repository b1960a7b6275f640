"""The model registry (hf_fast/models): each family's rules checked against the transformers model they describe,
the registry's look-ups, and no model_type string outside hf_fast/models."""
import ast
import json
import re
from pathlib import Path

import pytest
from _export_helpers import tiny_model

from hf_fast.models import registry
from hf_fast.models.spec import CONFIG_KEYS, FUSED_QKV_ROLES, LINEAR_ROLES, EngineLayer, Family, HeadLayout
from hf_fast.models.tasks import TASKS

FAMILIES = list(registry.families())
REPO = Path(__file__).resolve().parents[1]


def test_todays_families_and_only_them():
    assert {"bert", "camembert", "data2vec-text", "distilbert", "electra", "ernie", "mpnet", "roberta",
            "xlm-roberta"} <= set(FAMILIES)
    for fam in registry.families().values():
        for alias in fam.code_aliases:  # listed for the family work to come, not claimed
            assert registry.find(alias) is None


def test_unknown_and_alias_model_types_are_refused_by_name(monkeypatch):
    with pytest.raises(ValueError, match=r"unsupported architecture 'gpt2'.*bert, camembert, data2vec-text"):
        registry.get("gpt2")
    roberta = registry.get("roberta")
    monkeypatch.setitem(registry.families(), "roberta", roberta.derive("roberta", "RoBERTa", code_aliases=("x-rob",)))
    with pytest.raises(ValueError, match=r"'x-rob' shares RoBERTa's transformers code but is not tested"):
        registry.get("x-rob")
    with pytest.raises(ValueError, match="unsupported architecture None"):
        registry.get(None)


def test_derived_family_keeps_the_parents_rules_under_its_own_name():
    xlmr, roberta = registry.get("xlm-roberta"), registry.get("roberta")
    assert (xlmr.model_type, xlmr.description) == ("xlm-roberta", "XLM-RoBERTa")
    assert (xlmr.inputs, xlmr.heads, xlmr.engine, xlmr.prunable_linears) == (roberta.inputs, roberta.heads,
                                                                            roberta.engine, roberta.prunable_linears)
    ernie = registry.get("ernie")
    assert ernie.heads["text-classification"].modules == ("ernie.pooler.dense", "classifier")


@pytest.mark.parametrize("model_type, setting", [("ernie", {"use_task_id": True}), ("ibert", {"quant_mode": True})])
def test_a_config_setting_that_changes_the_graph_is_refused_by_name(model_type, setting):
    """ERNIE 3.0's task-type table is one more embedding the engine would misread, I-BERT's integer-only mode
    another graph: export refuses them."""
    import transformers

    cfg = transformers.AutoConfig.for_model(model_type, **setting)
    name, value = next(iter(setting.items()))
    with pytest.raises(ValueError, match=rf"{name}={value!r} computes another graph"):
        registry.for_config(cfg)
    registry.for_config(transformers.AutoConfig.for_model(model_type))  # the default is the family's graph


@pytest.mark.parametrize("arch", FAMILIES)
def test_config_names_read_the_real_config(arch):
    fam = registry.get(arch)
    m = tiny_model(arch, "text-classification", vocab_size=100, layers=3, hidden=32, heads=4, ffn=64)
    assert fam.normalize_config(m.config) == {"num_layers": 3, "hidden_size": 32, "num_heads": 4,
                                              "intermediate_size": 64}
    assert set(fam.config_names) == set(CONFIG_KEYS)
    assert registry.config_value(m.config, "num_layers") == 3


@pytest.mark.parametrize("arch", FAMILIES)
def test_prunable_linears_are_every_encoder_linear_once_per_role(arch):
    from torch import nn

    fam = registry.get(arch)
    m = tiny_model(arch, "text-classification", vocab_size=100, layers=2)
    roles = {}
    for name, mod in m.named_modules():
        r = fam.linear_role(name)
        if r is not None:
            assert isinstance(mod, nn.Linear) or type(mod).__name__ in fam.linear_classes, name
            # ModernBERT's Linears have no bias (EngineLayer linear_bias=False)
            assert mod.weight.ndim == 2 and (mod.bias is not None) == bool(fam.engine.bias_parts), name
            roles.setdefault(r[0], []).append(r[1])
    assert sorted(roles) == [0, 1]
    want = FUSED_QKV_ROLES if "qkv" in fam.linear_roles.values() else LINEAR_ROLES  # ModernBERT's fused Wqkv
    for layer, got in roles.items():
        assert sorted(got) == sorted(want), (layer, got)
    # the head and the embeddings are not prunable
    assert fam.linear_role("classifier") is None


@pytest.mark.parametrize("arch", FAMILIES)
@pytest.mark.parametrize("task", list(TASKS))
def test_head_layout_names_the_models_head(arch, task):
    from torch import nn

    fam = registry.get(arch)
    head = fam.heads[task]
    m = tiny_model(arch, task, vocab_size=100)
    mods = dict(m.named_modules())
    for path in head.modules:  # Linears, and ModernBERT's head.norm
        assert isinstance(mods.get(path), (nn.Linear, nn.LayerNorm)), f"{arch}/{task}: no Linear {path!r}"
    assert head.ops.count("linear") == sum(isinstance(mods[p], nn.Linear) for p in head.modules)
    assert head.ops.count("layernorm") == sum(isinstance(mods[p], nn.LayerNorm) for p in head.modules)
    assert (head.ops[:1] == ("cls",)) == (not TASKS[task]["token_level"])


@pytest.mark.parametrize("arch", FAMILIES)
def test_graph_inputs_are_what_the_model_takes(arch):
    import inspect

    fam = registry.get(arch)
    m = tiny_model(arch, "text-classification", vocab_size=100)
    params = inspect.signature(m.forward).parameters
    assert all(i in params for i in fam.inputs)
    assert fam.has_token_type_input == ("token_type_ids" in fam.inputs)
    dyn = fam.dynamic_axes(["logits"], token_level=False)
    assert dyn == {**{i: {0: "batch", 1: "sequence"} for i in fam.inputs}, "logits": {0: "batch"}}


@pytest.mark.parametrize("arch", FAMILIES)
def test_position_rule_matches_the_model(arch):
    """padding-offset: position ids start at pad_token_id + 1, so the longest input is that much shorter."""
    fam = registry.get(arch)
    m = tiny_model(arch, "text-classification", vocab_size=100, max_pos=64)
    cfg = m.config
    max_pos = cfg.max_position_embeddings
    import sys

    emb = m.base_model.embeddings
    # RoBERTa's code (and the types built from it) computes position ids from input_ids, as a method or a function
    create = (getattr(emb, "create_position_ids_from_input_ids", None)
              or getattr(sys.modules[type(emb).__module__], "create_position_ids_from_input_ids", None))
    if create is not None:
        assert fam.engine.position == "padding-offset"
        assert fam.max_sequence_length(cfg) == max_pos - cfg.pad_token_id - 1
        ids = __import__("torch").tensor([[5, 6, 7, cfg.pad_token_id]])
        pos = create(ids, cfg.pad_token_id)
        assert pos.tolist() == [[cfg.pad_token_id + 1 + t for t in range(3)] + [cfg.pad_token_id]]
    elif arch == "mpnet":  # RoBERTa's rule with MPNetEmbeddings' padding_idx 1 (the config's pad_token_id default)
        from transformers.models.mpnet.modeling_mpnet import MPNetEmbeddings

        assert fam.engine.position == "padding-offset" and cfg.pad_token_id == MPNetEmbeddings(cfg).padding_idx == 1
        assert fam.max_sequence_length(cfg) == max_pos - 2
    elif hasattr(m.base_model, "rotary_emb"):  # ModernBERT: no position table, q / k rotated
        assert fam.engine.position == "rotary" and not hasattr(emb, "position_embeddings")
        assert fam.max_sequence_length(cfg) == max_pos
    else:
        assert fam.engine.position == "absolute"
        assert fam.max_sequence_length(cfg) == max_pos


@pytest.mark.parametrize("arch", FAMILIES)
def test_onnx_layer_pattern_matches_exported_node_names(arch):
    """torch.onnx names a node after its module path (/bert/encoder/layer.0/attention/self/query/MatMul). The
    exporter no longer reads onnx_layer (the graph walker matches Family.layer: tests/test_runtime_walker.py checks
    its Linears against these module names); while the field exists it must still be right."""
    fam = registry.get(arch)
    m = tiny_model(arch, "text-classification", vocab_size=100)
    for name, _ in m.named_modules():
        node = "/" + re.sub(r"\.(?!\d)", "/", name) + "/MatMul"
        if fam.linear_role(name) is not None:
            assert re.search(fam.onnx_layer, node), node
        elif "layer." not in name:
            assert not re.search(fam.onnx_layer, node), node


def test_teacher_layer_map_keeps_the_last_layers_matched():
    fam = registry.get("bert")
    assert fam.layer_map(3, 12) == {0: 3, 1: 7, 2: 11}
    assert fam.layer_map(6, 6) == {i: i for i in range(6)}


def test_spec_refuses_what_the_engine_description_does_not_know():
    """Values outside the C description's vocabulary; the ones it names but does not run yet ("pre", "rotary", ...)
    are refused when the engine is created (tests/test_engine_desc.py)."""
    with pytest.raises(ValueError, match="position"):
        EngineLayer(position="alibi")
    with pytest.raises(ValueError, match="norm"):
        EngineLayer(norm="sandwich")
    with pytest.raises(ValueError, match="attention_bias"):
        EngineLayer(attention_bias="alibi")
    with pytest.raises(ValueError, match="head ops"):
        HeadLayout(("x",), ("softmax",))
    bert = registry.get("bert")
    with pytest.raises(ValueError, match="linear_roles"):
        Family("x", "x", bert.inputs, bert.config_names, bert.prunable_linears,
               {"attention.self.query": "q"}, bert.onnx_layer, bert.heads)
    with pytest.raises(ValueError, match="config_names"):
        Family("x", "x", bert.inputs, {"num_layers": ("n",)}, bert.prunable_linears, bert.linear_roles,
               bert.onnx_layer, bert.heads)
    with pytest.raises(ValueError, match="onnx_fusions"):
        bert.derive("x", "x", onnx_fusions=("gelu",))


def test_task_table_names_the_fast_classes_and_transformers_tables():
    from transformers.models.auto import modeling_auto

    from hf_fast.runtime import modeling

    for task, spec in TASKS.items():
        assert getattr(modeling, spec["fast_class"]).task == task
        assert isinstance(getattr(modeling_auto, spec["pipeline_table"]), dict)


def _model_type_strings(source: str, names: set[str]) -> list[tuple[int, str]]:
    """String literals (f-string parts included) that are a model type, or quote one ('... "bert" ...')."""
    hits = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            v = node.value.strip().lower()
            if v in names or any(f"'{n}'" in v or f'"{n}"' in v for n in names):
                hits.append((node.lineno, node.value))
    return hits


def test_no_model_type_string_outside_the_registry():
    """The exporter, trainer, runtime and benchmarks ask the registry; only hf_fast/models names a model type."""
    fams = registry.families().values()
    names = {f.model_type for f in fams} | {a for f in fams for a in f.code_aliases}
    assert _model_type_strings('x = {"bert": 1}\ny = f"a {z} \'roberta\'"', names) == [(1, "bert"), (2, " 'roberta'")]
    found = {}
    for p in sorted((REPO / "hf_fast").rglob("*.py")):
        if (REPO / "hf_fast" / "models") in p.parents:
            continue
        hits = _model_type_strings(p.read_text(encoding="utf-8"), names)
        if hits:
            found[str(p.relative_to(REPO))] = hits
    assert not found, f"model_type strings outside hf_fast/models (read them from the registry): {found}"


# ---------------------------------------------------------------- the families found in transformers' code
FOUND = json.loads((REPO / "tools" / "bert_like.json").read_text())
# types tools/find_bert_like.py finds to have BERT's or RoBERTa's encoder that the engine does not run yet, and why
# (README.md "Model families"); they fall back to ONNX Runtime
NOT_YET = {
    "splinter": "its only task head (question answering) is QASS, which takes question positions as an input",
}
# the look-alikes the finder must tell apart: pre-LN, extra inputs, relative attention, block-sparse attention
LOOK_ALIKES = ["roberta-prelayernorm", "xlm-roberta-xl", "megatron-bert", "layoutlm", "deberta-v2", "big_bird",
               "electra"]


def _finder():
    from _script_loader import load_script

    return load_script(REPO / "tools" / "find_bert_like.py")


def test_every_found_type_is_a_family_or_named_with_its_reason():
    found = {t for t, r in FOUND["model_types"].items() if r["match"]}
    assert {"bert", "distilbert", "roberta", "xlm-roberta"} <= found
    missing = found - set(NOT_YET) - set(FAMILIES)
    assert not missing, f"tools/bert_like.json finds {sorted(missing)}: add a registry module or say why in NOT_YET"
    assert not set(NOT_YET) & set(FAMILIES) and set(NOT_YET) <= found
    for t in sorted(found & set(FAMILIES)):
        rec, fam = FOUND["model_types"][t], registry.get(t)
        assert rec["position"] == fam.engine.position, t
        assert rec["token_types"] == fam.engine.token_types, t
        for task, head in rec["heads"].items():
            assert tuple(head["head_linears"]) == fam.heads[task].modules, (t, task)


def test_look_alikes_are_not_found():
    for t in LOOK_ALIKES:
        rec = FOUND["model_types"][t]
        assert rec["match"] is None and rec["why"], t
        assert registry.find(t) is None or t == "electra"  # ELECTRA: its own module (embeddings projection)


def test_the_finder_reproduces_its_recorded_output():
    """Rerun on the families and the look-alikes (a few seconds); the full run is `python tools/find_bert_like.py
    --out tools/bert_like.json`, needed again when transformers changes."""
    import transformers

    assert FOUND["transformers"] == transformers.__version__, (
        "tools/bert_like.json was recorded with another transformers: rerun tools/find_bert_like.py")
    subset = sorted({t for t in FAMILIES if t in FOUND["model_types"]} | set(NOT_YET) | set(LOOK_ALIKES))
    got = _finder().find(subset)["model_types"]
    for t in subset:
        want = FOUND["model_types"][t]
        assert got[t]["match"] == want["match"], (t, got[t])
        if want["match"]:
            assert got[t]["heads"] == want["heads"] and got[t]["token_types"] == want["token_types"], t


def test_readme_family_table_is_the_registry():
    """README.md's "Model families" table is registry.markdown_table(): a new family module changes it."""
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    m = re.search(r"^## Model families\s*$(.*?)(?=^## |\Z)", readme, re.M | re.S)
    assert m is not None, "README.md has no '## Model families' section"
    table = "\n".join(ln for ln in m.group(1).splitlines() if ln.startswith("|")) + "\n"
    assert table == registry.markdown_table(), (
        "README.md's family table differs from the registry; replace it with:\n" + registry.markdown_table())
    for t in FAMILIES:  # and the prose names each family
        assert f"`{t}`" in m.group(1)
