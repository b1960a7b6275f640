"""runtime/plan.py reads the family from fast_config.json "model_type" (hf_fast.models registry): its position rule,
token types and head program are checked against the graph; old artifacts without a known type are detected."""
import json
import shutil

import numpy as np
import onnx
import pytest
from _export_helpers import calibration_for, tiny_model, tokenizer

from hf_fast.runtime.graph import GraphMatchError
from hf_fast.runtime.plan import build_plan

TASK = "text-classification"


@pytest.fixture(scope="module")
def artifacts(tmp_path_factory):
    import hf_fast

    tok = tokenizer()
    root = tmp_path_factory.mktemp("plan_family")
    out = {}
    for arch in ("bert", "distilbert", "roberta"):
        m = tiny_model(arch, TASK, tok.vocab_size, seed=3)
        out[arch] = hf_fast.export(m, tok, root / arch, calibration_dataset=calibration_for(TASK), progress=False)
    return out


def _proto(path):
    return onnx.load(str(path / "model.onnx"))


@pytest.mark.parametrize("arch", ["bert", "distilbert", "roberta"])
def test_recorded_family_gives_the_detected_plan(artifacts, arch):
    fc = json.loads((artifacts[arch] / "fast_config.json").read_text())
    assert fc["model_type"] == arch
    p = build_plan(_proto(artifacts[arch]), fc["num_heads"], fc["model_type"], fc["task"])
    old = build_plan(_proto(artifacts[arch]), fc["num_heads"])  # an artifact read by detection alone
    assert np.array_equal(p.embeddings.position, old.embeddings.position)
    assert p.embeddings.padding_idx == old.embeddings.padding_idx
    assert (p.embeddings.padding_idx is not None) == (arch == "roberta")
    assert [op.kind for op in p.head] == [op.kind for op in old.head]


def test_padding_offset_family_on_an_absolute_graph_is_refused(artifacts):
    with pytest.raises(GraphMatchError, match="RoBERTa positions count real tokens.*do not depend on input_ids"):
        build_plan(_proto(artifacts["bert"]), 4, "roberta", TASK)


def test_absolute_family_on_a_padding_offset_graph_is_refused(artifacts):
    with pytest.raises(GraphMatchError, match="absolute positions.*computed from input_ids"):
        build_plan(_proto(artifacts["roberta"]), 4, "bert", TASK)


def test_token_types_follow_the_family(artifacts):
    with pytest.raises(GraphMatchError, match="DistilBERT adds no token-type embedding, the graph a"):
        build_plan(_proto(artifacts["bert"]), 4, "distilbert", TASK)
    with pytest.raises(GraphMatchError, match="BERT / MiniLM adds a token-type embedding, the graph no"):
        build_plan(_proto(artifacts["distilbert"]), 4, "bert", TASK)


def test_head_program_follows_the_family_and_task(artifacts):
    with pytest.raises(GraphMatchError, match="token-classification head is linear.*graph computes cls/linear/tanh"):
        build_plan(_proto(artifacts["bert"]), 4, "bert", "token-classification")


def test_native_backend_reads_model_type_from_fast_config(artifacts, tmp_path):
    """The artifact's recorded family is what the runtime checks: a roberta file recorded as bert is refused."""
    from hf_fast.runtime.modeling import FastModelForSequenceClassification

    d = tmp_path / "art"
    shutil.copytree(artifacts["roberta"], d)
    fc = json.loads((d / "fast_config.json").read_text())
    fc["model_type"] = "bert"
    (d / "fast_config.json").write_text(json.dumps(fc))
    with pytest.raises(GraphMatchError, match="absolute positions"):
        FastModelForSequenceClassification.from_pretrained(d, backend="native", pack_cache=False)
