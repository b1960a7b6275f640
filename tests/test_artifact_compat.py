"""Artifact compatibility (issue 18, item 10): the golden artifact of format_version 1 in tests/golden/ must keep
loading, and keep giving the outputs recorded when it was written (tests/golden/make_golden.py).

Comparison policy:
- native engine: bit-exact against the recording made on the same ISA (expected_native_<isa>.npy), on the platform
  the recording names (x86_64 + the same libc: the reference kernels and the head's tanh call libm's expf/tanhf).
  Bit-exact is the point: engine changes must keep logits bit-identical for an existing artifact. An ISA without a
  recording (a new architecture's kernels) or another libc is held to the tolerance below instead.
- ONNX Runtime: within the tolerance, with graph optimisations off (the graph's exact QDQ semantics; ORT's fused int8
  kernels differ by CPU, see hf_fast/export/README.md); with its default optimisations: the same labels.
- Tolerance: max |diff| <= 1e-2 * max |expected| + 1e-4, the engine-vs-ORT bound of test_runtime_engine.py: it
  admits fp32 summation-order differences and the rare uint8 rounding flip they cause, nothing structural
  (test_tolerance_is_tight_enough_to_catch_a_wrong_input shows a single changed input breaks it).
"""
import json
import platform
import shutil

import numpy as np
import pytest

from hf_fast import native
from hf_fast.export.artifact import FORMAT_VERSION, ArtifactError, load_fast_config
from hf_fast.runtime import FastModelForSequenceClassification

GOLDEN = __import__("pathlib").Path(__file__).resolve().parent / "golden" / "format_v1_bert_tc"
ARTIFACT = GOLDEN / "artifact"
META = json.loads((GOLDEN / "inputs.json").read_text())
FEEDS = {k: np.asarray(META[k], np.int64) for k in ("input_ids", "attention_mask", "token_type_ids")}


def _expected(name: str) -> np.ndarray:
    return np.load(GOLDEN / f"expected_{name}.npy", allow_pickle=False)


def _close(got: np.ndarray, want: np.ndarray) -> bool:
    return got.shape == want.shape and float(np.abs(got - want).max()) <= 1e-2 * float(np.abs(want).max()) + 1e-4


def _same_platform() -> bool:
    rec = META["recorded_on"]
    return rec["machine"] == platform.machine() and rec["libc"] == " ".join(platform.libc_ver())


def test_golden_is_format_version_1_and_loads():
    fc = load_fast_config(ARTIFACT, verify=True)  # schema and sha256 of model.onnx
    assert fc["format_version"] == 1 == FORMAT_VERSION
    assert fc["block"] == "4x1" and fc["sparsity"]["bert.encoder.layer.0.attention.output.dense"] > 0.6
    assert not any(p.suffix in (".pkl", ".pt", ".bin") for p in ARTIFACT.iterdir())


def test_golden_tokenizer_still_gives_the_recorded_ids():
    from transformers import AutoTokenizer

    enc = AutoTokenizer.from_pretrained(str(ARTIFACT))(META["sentences"], padding=True, return_tensors="np")
    for k, v in FEEDS.items():
        assert np.array_equal(enc[k], v), k


@pytest.mark.parametrize("isa", native.BUILT_ISA_NAMES)  # unsupported ones skip visibly (conftest.py)
def test_native_engine_reproduces_the_recorded_logits(isa):
    model = FastModelForSequenceClassification.from_pretrained(ARTIFACT, backend="native", isa=isa)
    assert model.backend.engine.isa == isa
    got = model(**FEEDS).logits
    got = np.asarray(got.detach() if hasattr(got, "detach") else got)
    recorded = GOLDEN / f"expected_native_{isa}.npy"
    if recorded.exists() and _same_platform():
        want = _expected(f"native_{isa}")
        assert got.dtype == want.dtype and np.array_equal(got, want), (
            f"{isa}: logits differ from the recording by up to {np.abs(got - want).max():.3g} (bit-exact expected)")
    else:
        assert _close(got, _expected("native_ref")), f"{isa}: max |diff| {np.abs(got - _expected('native_ref')).max()}"


def test_pack_cache_hit_gives_the_same_logits():
    first = FastModelForSequenceClassification.from_pretrained(ARTIFACT)
    second = FastModelForSequenceClassification.from_pretrained(ARTIFACT)
    assert second.backend.pack_cache == "hit"
    a, b = first.run(**FEEDS)["logits"], second.run(**FEEDS)["logits"]
    assert np.array_equal(a, b)


def test_onnxruntime_reproduces_the_recorded_logits():
    want = _expected("onnxruntime")
    exact = FastModelForSequenceClassification.from_pretrained(ARTIFACT, backend="onnxruntime",
                                                               graph_optimization_level="ORT_DISABLE_ALL")
    got = exact.run(**FEEDS)["logits"]
    assert _close(got, want), f"max |diff| {np.abs(got - want).max()}"
    fused = FastModelForSequenceClassification.from_pretrained(ARTIFACT, backend="onnxruntime")
    assert np.array_equal(fused.run(**FEEDS)["logits"].argmax(-1), want.argmax(-1))


def test_tolerance_is_tight_enough_to_catch_a_wrong_input():
    """The tolerance path must be able to fail: one token type, or one position (a shifted sequence), changed."""
    model = FastModelForSequenceClassification.from_pretrained(ARTIFACT)
    want = _expected("native_ref")
    types = FEEDS["token_type_ids"].copy()
    types[:, 1] = 1
    assert not _close(model.run(FEEDS["input_ids"], FEEDS["attention_mask"], types)["logits"], want)
    ids = np.roll(FEEDS["input_ids"], 1, axis=1)  # every real token one position later
    assert not _close(model.run(ids, np.roll(FEEDS["attention_mask"], 1, axis=1), types * 0)["logits"], want)


def _edited_copy(tmp_path, **changes):
    d = tmp_path / "golden"
    shutil.copytree(ARTIFACT, d)
    p = d / "fast_config.json"
    fc = json.loads(p.read_text())
    fc.update(changes)
    p.write_text(json.dumps(fc))
    return d


def test_newer_format_version_is_refused_naming_both_versions(tmp_path):
    d = _edited_copy(tmp_path, format_version=2)
    for load in (lambda: load_fast_config(d), lambda: FastModelForSequenceClassification.from_pretrained(d),
                 lambda: FastModelForSequenceClassification.from_pretrained(d, backend="onnxruntime")):
        with pytest.raises(ArtifactError, match=r"format_version 2.*newer.*reads format_version 1.*upgrade"):
            load()


@pytest.mark.parametrize("version", [0, None, "1"])
def test_older_or_malformed_format_version_is_refused(tmp_path, version):
    d = _edited_copy(tmp_path, format_version=version)
    with pytest.raises(ArtifactError, match=r"format_version .*reads format_version 1.*re-export"):
        load_fast_config(d)


def test_registered_migration_upgrades_an_old_artifact_with_a_message(tmp_path, monkeypatch, caplog):
    """The migration hook of artifact.py: a format_version-0 copy loads once a 0 -> 1 migration is registered."""
    from hf_fast.export import artifact

    d = _edited_copy(tmp_path, format_version=0, legacy_key=True)

    def zero_to_one(fc):
        fc = dict(fc)
        fc.pop("legacy_key")
        return {**fc, "format_version": 1}

    monkeypatch.setitem(artifact.MIGRATIONS, 0, (zero_to_one, "drops legacy_key"))
    with caplog.at_level("WARNING"):
        fc = load_fast_config(d)
    assert fc["format_version"] == 1 and "legacy_key" not in fc
    assert "format_version 0" in caplog.text and "drops legacy_key" in caplog.text
    assert json.loads((d / "fast_config.json").read_text())["format_version"] == 0  # the folder is not rewritten
