"""Hub round trip against a local HTTP server speaking the Hub API (tests/hub_server.py, 127.0.0.1):
push (create_repo + upload_folder), download (snapshot_download into the Hub cache) with revision, cache_dir,
token, HF_HUB_OFFLINE, HF_ENDPOINT, and pipelines from a repo id. Nothing leaves the machine."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from _export_helpers import SENTENCES, encode, tiny_model  # noqa: E402
from hub_server import TOKEN  # noqa: E402
from huggingface_hub.errors import HfHubHTTPError  # noqa: E402

import hf_fast  # noqa: E402
from hf_fast.hub import HubArtifactNotFoundError, push_fast_folder, resolve_artifact  # noqa: E402
from hf_fast.runtime import FastModelForSequenceClassification  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def folders(tmp_path_factory, tok):
    """Two save_fast folders of the same shape with different weights (v1, v2)."""
    root = tmp_path_factory.mktemp("hub-src")
    out = {}
    for seed in (0, 1):
        m = tiny_model("bert", "text-classification", tok.vocab_size, seed=seed, num_labels=2)
        m.config.id2label, m.config.label2id = {0: "neg", 1: "pos"}, {"neg": 0, "pos": 1}
        out[f"v{seed + 1}"] = (hf_fast.save_fast(m, tok, root / f"v{seed + 1}", SENTENCES, progress=False,
                                                 metrics={"eval_accuracy": 0.5 + seed / 10}), m)
    return out


def _logits(fm, tok):
    return fm(**encode(tok, "text-classification", "bert")).logits


def test_push_and_download_roundtrip(hub, folders, tok, tmp_path):
    v1, model = folders["v1"]
    info = push_fast_folder(v1, "tester/tiny-fast", token=TOKEN)
    assert info.oid == hub.repos["tester/tiny-fast"].branches["main"]
    files = hub.files("tester/tiny-fast")
    assert {"model.onnx", "fast_config.json", "config.json", "model.safetensors", "README.md",
            "tokenizer.json"} <= set(files)
    assert files["model.onnx"] == (v1 / "model.onnx").read_bytes()
    assert not any(n.endswith((".bin", ".pkl", ".pt")) for n in files)
    routes = {(m, p.split("/tester/")[0]) for m, p in hub.requests}
    assert ("POST", "/api/repos/create") in routes and ("POST", "/api/models") in routes  # create, preupload/commit
    # the card: hf-fast tag, pipeline tag, sparsity / accuracy table (read back through the Hub API)
    from huggingface_hub import HfApi

    mi = HfApi(endpoint=hub.url).model_info("tester/tiny-fast", token=TOKEN)
    assert "hf-fast" in mi.tags and mi.pipeline_tag == "text-classification"
    # the card read back with huggingface_hub: the accuracy as a model-index entry
    from huggingface_hub import ModelCard

    card = ModelCard(files["README.md"].decode())
    (res,) = card.data.eval_results
    assert (res.task_type, res.metric_type, res.metric_value) == ("text-classification", "accuracy", 0.5)
    assert "## Results" in card.text and "zero blocks" in card.text

    cache = tmp_path / "cache"
    fm = FastModelForSequenceClassification.from_pretrained("tester/tiny-fast", cache_dir=cache, backend="onnxruntime")
    assert Path(fm.path).is_relative_to(cache / "models--tester--tiny-fast" / "snapshots")
    assert not (Path(fm.path) / "model.safetensors").exists()  # the runtime downloads no PyTorch weights
    local = FastModelForSequenceClassification.from_pretrained(v1, backend="onnxruntime")
    assert torch.equal(_logits(fm, tok), _logits(local, tok))
    # the same snapshot also loads in transformers when the weights are wanted (artifact_only=False)
    full = resolve_artifact("tester/tiny-fast", cache_dir=cache, artifact_only=False)
    import transformers

    tm = transformers.AutoModelForSequenceClassification.from_pretrained(full)
    with torch.no_grad():
        ref = model(**encode(tok, "text-classification", "bert")).logits
        assert torch.allclose(tm(**encode(tok, "text-classification", "bert")).logits, ref)


def test_push_skips_a_trainers_checkpoints_and_hidden_files(hub, folders, tmp_path):
    """A folder saved over a training run keeps its checkpoints (and a clone's .git): pushing it uploads the model,
    not them, as transformers' Trainer.push_to_hub does."""
    import shutil

    v1, _ = folders["v1"]
    folder = Path(shutil.copytree(v1, tmp_path / "fast"))
    for d in ("checkpoint-10", "runs/a/checkpoint-3"):
        (folder / d).mkdir(parents=True)
        (folder / d / "trainer_state.json").write_text("{}")
        shutil.copy(v1 / "model.safetensors", folder / d / "model.safetensors")
    (folder / ".git").mkdir()
    (folder / ".git" / "config").write_text("[core]\n")
    push_fast_folder(folder, "tester/with-checkpoints", token=TOKEN)
    files = set(hub.files("tester/with-checkpoints"))
    assert {"model.onnx", "model.safetensors", "fast_config.json"} <= files
    assert not [n for n in files if "checkpoint-" in n or n.startswith(".git/")], sorted(files)


def test_revision_and_offline(hub, folders, tok, tmp_path, monkeypatch):
    (v1, _), (v2, _) = folders["v1"], folders["v2"]
    first = push_fast_folder(v1, "tester/rev", token=TOKEN).oid
    push_fast_folder(v2, "tester/rev", token=TOKEN, revision="v2")
    third = push_fast_folder(v2, "tester/rev", token=TOKEN, commit_message="v2 on main").oid
    assert first != third
    cache = tmp_path / "c"
    want1 = _logits(FastModelForSequenceClassification.from_pretrained(v1, backend="onnxruntime"), tok)
    want2 = _logits(FastModelForSequenceClassification.from_pretrained(v2, backend="onnxruntime"), tok)
    assert not torch.equal(want1, want2)
    def load(**kw):
        return _logits(FastModelForSequenceClassification.from_pretrained(
            "tester/rev", cache_dir=cache, backend="onnxruntime", **kw), tok)
    assert torch.equal(load(revision="v2"), want2)
    assert torch.equal(load(revision=first), want1)  # a commit sha
    assert torch.equal(load(), want2)
    with pytest.raises(HubArtifactNotFoundError, match="no revision"):
        load(revision="nope")
    # offline: served from the cache, no request reaches the server; an empty cache fails clearly
    from huggingface_hub import constants

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    hub.requests.clear()
    assert torch.equal(load(revision="v2"), want2)
    assert torch.equal(load(), want2)
    assert hub.requests == []
    with pytest.raises(HubArtifactNotFoundError, match="offline"):
        FastModelForSequenceClassification.from_pretrained("tester/rev", cache_dir=tmp_path / "empty")
    with pytest.raises(RuntimeError, match="offline"):
        push_fast_folder(v1, "tester/rev", token=TOKEN)


def test_private_repo_needs_token(hub, folders, tmp_path):
    v1, _ = folders["v1"]
    push_fast_folder(v1, "tester/private", token=TOKEN, private=True)
    assert hub.repos["tester/private"].private
    with pytest.raises(HubArtifactNotFoundError, match="private"):
        resolve_artifact("tester/private", cache_dir=tmp_path / "a")
    p = resolve_artifact("tester/private", cache_dir=tmp_path / "b", token=TOKEN)
    assert (p / "model.onnx").is_file()
    with pytest.raises(HfHubHTTPError):  # a token the server does not know cannot write
        push_fast_folder(v1, "tester/private", token="hf_wrong")
    with pytest.raises(HubArtifactNotFoundError, match="no such repo"):
        resolve_artifact("tester/missing", cache_dir=tmp_path / "c", token=TOKEN)
    with pytest.raises(ValueError, match="invalid Hub repo id"):
        push_fast_folder(v1, "a/b/c", token=TOKEN)


def test_pipeline_from_repo_id(hub, folders, tok, tmp_path):
    v1, _ = folders["v1"]
    push_fast_folder(v1, "tester/pipe", token=TOKEN)
    clf = hf_fast.pipeline("text-classification", model="tester/pipe", cache_dir=tmp_path / "c",
                           backend="onnxruntime")
    out = clf(SENTENCES[:3])
    assert len(out) == 3 and all(o["label"] in ("neg", "pos") for o in out)
    local = hf_fast.pipeline(model=str(v1), backend="onnxruntime")(SENTENCES[:3])  # task from the artifact
    assert [o["label"] for o in out] == [o["label"] for o in local]


def test_hf_endpoint_env_in_a_fresh_process(hub, folders, tmp_path):
    """No patching at all: a new interpreter configured only through the environment (HF_ENDPOINT read at
    import by huggingface_hub, and at call time by hf-fast)."""
    v1, _ = folders["v1"]
    push_fast_folder(v1, "tester/env", token=TOKEN)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "TRANSFORMERS_"))}
    env.update(HF_ENDPOINT=hub.url, HF_HOME=str(tmp_path / "home"), HF_HUB_DISABLE_TELEMETRY="1",
               PYTHONPATH=str(REPO))
    code = ("from hf_fast.runtime import load_fast_model; import json;"
            "m = load_fast_model('tester/env', backend='onnxruntime');"
            "print(json.dumps({'path': str(m.path), 'logits': m(input_ids=[[101, 2023, 102]]).logits.tolist()}))")
    r = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]
    got = json.loads(r.stdout.strip().splitlines()[-1])
    assert got["path"].startswith(str(tmp_path / "home" / "hub" / "models--tester--env"))
    want = FastModelForSequenceClassification.from_pretrained(v1, backend="onnxruntime")(input_ids=[[101, 2023, 102]])
    assert np.allclose(got["logits"], want.logits.numpy())


# ------------------------------------------------------------------ the model card
def _card(folder):
    from huggingface_hub import ModelCard, metadata_load

    return ModelCard.load(Path(folder) / "README.md"), metadata_load(Path(folder) / "README.md")


def test_card_metadata_and_model_index(tmp_path, tok):
    """Metrics in model-index form (rounded, each once), sparsity as a property, Hub metadata, no placeholder link."""
    m = tiny_model("distilbert", "text-classification", tok.vocab_size, num_labels=2)
    out = hf_fast.save_fast(m, tok, tmp_path / "fast", SENTENCES[:8], progress=False, datasets=["rotten_tomatoes"],
                            metrics={"eval_accuracy": 0.873456, "int8_native_accuracy": 87.3456, "eval_loss": 0.6931472,
                                     "sparsity_target": 0.8})
    card, meta = _card(out)
    assert meta["library_name"] == "transformers" and meta["pipeline_tag"] == "text-classification"
    assert meta["tags"][0] == "hf-fast" and meta["datasets"] == ["rotten_tomatoes"]
    got = {(r.metric_type, r.metric_name): r.metric_value for r in card.data.eval_results}
    assert got == {("accuracy", "accuracy"): 0.8735, ("accuracy", "accuracy (int8, hf-fast engine)"): 87.35,
                   ("loss", "loss"): 0.6931}
    assert {(r.task_type, r.dataset_type, r.dataset_name) for r in card.data.eval_results} == {
        ("text-classification", "rotten_tomatoes", "rotten_tomatoes")}
    assert meta["model-index"][0]["results"][0]["metrics"][0] == {"type": "accuracy", "value": 0.8735,
                                                                    "name": "accuracy"}
    body = card.text
    assert body.count("0.8735") == 1 and body.count("87.35") == 1 and "0.873456" not in body  # once, rounded
    assert "| sparsity_target | 80.00% |" in body and "sparsity" not in {r.metric_type for r in card.data.eval_results}
    assert "https://github.com/" not in str(card) and "](https://" not in str(card)
    assert "Speed: not measured" in body  # speed only when asked for (measure_speed=True)


def test_card_usage_snippet_runs_the_default_backend(tmp_path, tok):
    """The card's snippet, run as written, loads the native engine (the default backend); its ONNX Runtime line
    names a backend that loads too."""
    import re

    m = tiny_model("bert", "text-classification", tok.vocab_size, num_labels=2)
    out = hf_fast.save_fast(m, tok, tmp_path / "fast", SENTENCES[:4], progress=False)
    card, _ = _card(out)
    (code,) = re.findall(r"```python\n(.*?)```", card.text, re.S)
    code = code.replace('"path/to/this/folder"', repr(str(out)))
    ns: dict = {}
    exec(compile(code, "card-snippet", "exec"), ns)
    assert ns["model"].backend.name == "native"
    assert ns["outputs"].logits.shape == (1, 2)
    alt = re.search(r"^# (model = .*backend=\"onnxruntime\"\))", code, re.M).group(1)
    exec(alt, ns)
    assert ns["model"].backend.name == "onnxruntime"


def _rounds(native, onnxruntime):
    """A timing function (interleaved_rounds' signature) returning fixed per-round medians; runs each runner
    once so the runners are real."""
    def time_rounds(runners, rounds, iterations):
        assert set(runners) == {"native", "onnxruntime"} and rounds >= 5 and iterations >= 1
        for run in runners.values():
            run()
        return {"native": list(native), "onnxruntime": list(onnxruntime)}
    return time_rounds


def test_card_speed_from_injected_rounds(folders, tmp_path):
    """Stable rounds: figures with threads, shape and machine. Rounds that disagree by more than 10% (a busy
    machine, here one slow engine round that would read 0.1x): no figure, a note instead."""
    import shutil

    from huggingface_hub import ModelCard

    from hf_fast.bench import quick_speed
    from hf_fast.hub import write_model_card

    v1, _ = folders["v1"]
    folder = tmp_path / "f"
    shutil.copytree(v1, folder)
    info = hf_fast.native_info()
    ok = quick_speed(folder, sequence_length=16, threads=1,
                     time_rounds=_rounds([1.0, 1.02, 0.98, 1.01, 1.0], [4.0, 4.1, 3.95, 4.02, 4.0]))
    assert ok["stable"] and ok["speedup"] == pytest.approx(4.0, abs=0.05) and ok["latency_ms"]["native"] == 1.0
    write_model_card(folder, speed=ok)
    text = ModelCard.load(folder / "README.md").text
    assert f"batch 1 x sequence 16, 1 thread(s), {info['cpu']} ({info['isa']})" in text
    assert "median of 5 rounds" in text and "| hf-fast engine (default) | 1.0 | 4.00x |" in text
    assert "| ONNX Runtime | 4.0 | 1.00x |" in text

    busy = quick_speed(folder, sequence_length=16, threads=1,
                       time_rounds=_rounds([1.0, 1.0, 1.0, 1.0, 40.0], [4.0, 4.0, 4.0, 4.0, 4.0]))
    assert not busy["stable"] and busy["spread"] > 0.10
    write_model_card(folder, speed=busy)
    text = ModelCard.load(folder / "README.md").text
    assert "Speed: not shown" in text and "more than 10%" in text
    assert "latency (ms)" not in text and "x |" not in text
    with pytest.raises(ValueError, match="rounds must be >= 5"):
        quick_speed(folder, rounds=3)


def test_interleaved_rounds_alternate_and_take_medians():
    from hf_fast.bench import interleaved_rounds, summarize_rounds

    calls = []
    now = [0.0]
    cost = {"native": 0.001, "onnxruntime": 0.004}

    def runner(name):
        def run():
            calls.append(name)
            now[0] += cost[name]
        return run

    per_round = interleaved_rounds({"native": runner("native"), "onnxruntime": runner("onnxruntime")}, rounds=5,
                                   iterations=3, warmup=1, clock=lambda: now[0])
    assert calls == ["native", "onnxruntime"] * (1 + 5 * 3)  # taking turns run by run, warm-up first
    assert per_round["native"] == pytest.approx([1.0] * 5) and per_round["onnxruntime"] == pytest.approx([4.0] * 5)
    s = summarize_rounds(per_round)
    assert s["stable"] and s["rounds"] == 5 and s["speedup"] == pytest.approx(4.0)
    s = summarize_rounds({"native": [1, 1, 1, 1, 1.2], "onnxruntime": [4] * 5})  # 20% apart
    assert not s["stable"] and s["spread"] == pytest.approx(0.2)
