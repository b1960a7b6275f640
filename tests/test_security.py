"""Loading never executes code from an artifact (issue 7): no pickle, no trust_remote_code, no external
data. A planted pickle, a planted .py module wired up through config.json's auto_map, and an ONNX
initializer pointing at a file outside the artifact are all ignored or refused."""
from __future__ import annotations

import json
import os
import pickle
import re
from pathlib import Path

import numpy as np
import onnx
import pytest
from _fuzz_helpers import copy_artifact, refresh_sha, valid_inputs

REPO = Path(__file__).resolve().parents[1]


class _Boom:
    """Unpickling this writes a marker file (what a malicious pickle would do, harmlessly)."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (Path.write_text, (Path(self.marker), "pwned"))


@pytest.fixture(scope="module")
def art(micro_artifacts):
    return micro_artifacts["bert"]  # shared: the tests below plant files in copies


def _plant(d: Path, marker: Path) -> None:
    payload = pickle.dumps(_Boom(str(marker)))
    for name in ("model.pkl", "pytorch_model.bin", "training_args.bin", "optimizer.pt", "fast_config.pkl"):
        (d / name).write_bytes(payload)
    code = f"from pathlib import Path\nPath({str(marker)!r}).write_text('pwned')\n"
    for name in ("modeling_evil.py", "configuration_evil.py", "__init__.py", "hf_fast_plugin.py"):
        (d / name).write_text(code)
    cfg = json.loads((d / "config.json").read_text())
    cfg["auto_map"] = {"AutoConfig": "configuration_evil.EvilConfig",
                       "AutoModelForSequenceClassification": "modeling_evil.EvilModel"}
    (d / "config.json").write_text(json.dumps(cfg))
    fc = json.loads((d / "fast_config.json").read_text())
    fc["trust_remote_code"] = True
    fc["custom_ops"] = ["modeling_evil.py"]
    (d / "fast_config.json").write_text(json.dumps(fc))


@pytest.mark.parametrize("backend", ["native", "onnxruntime"])
def test_planted_pickle_and_python_are_ignored(art, tmp_path, backend, monkeypatch):
    from hf_fast.runtime.modeling import load_fast_model

    d = copy_artifact(art, tmp_path / "evil")
    marker = tmp_path / "PWNED"
    _plant(d, marker)
    # the planted pickle really is live: unpickling it would write the marker
    pickle.loads((d / "model.pkl").read_bytes())
    assert marker.exists()
    marker.unlink()

    # and loading must not unpickle anything at all
    def refuse(*a, **k):
        raise AssertionError("the loader unpickled something")

    monkeypatch.setattr(pickle, "load", refuse)
    monkeypatch.setattr(pickle, "loads", refuse)
    import torch

    monkeypatch.setattr(torch, "load", refuse)
    m = load_fast_model(d, backend=backend)
    m.run(**valid_inputs("bert"))
    assert not marker.exists(), "loading the artifact executed code planted in it"
    assert "modeling_evil" not in __import__("sys").modules and "configuration_evil" not in __import__("sys").modules


def test_onnx_external_data_outside_the_artifact_is_refused(art, tmp_path):
    """An initializer may name an external file; the native engine reads one self-contained model.onnx only."""
    from hf_fast.runtime.modeling import load_fast_model

    d = copy_artifact(art, tmp_path / "ext")
    secret = tmp_path / "secret.bin"
    secret.write_bytes(np.arange(4096, dtype=np.float32).tobytes())
    model = onnx.load(str(d / "model.onnx"))
    init = max(model.graph.initializer, key=lambda t: len(t.raw_data))
    init.ClearField("raw_data")
    init.data_location = onnx.TensorProto.EXTERNAL
    for k, v in (("location", "../secret.bin"), ("offset", "0"), ("length", str(int(np.prod(init.dims)) * 4))):
        e = init.external_data.add()
        e.key, e.value = k, v
    onnx.save(model, str(d / "model.onnx"))
    refresh_sha(d)
    with pytest.raises(ValueError, match="external"):
        load_fast_model(d, backend="native")
    # ONNX Runtime refuses paths that leave the model's folder
    with pytest.raises(ValueError):
        load_fast_model(d, backend="onnxruntime").run(**valid_inputs("bert"))


def test_loader_sources_use_no_pickle_or_remote_code():
    """Static guard: the runtime and the artifact loader never reach for pickle, torch.load, eval/exec or
    trust_remote_code (so a future edit that does fails here, not in production)."""
    files = [*(REPO / "hf_fast" / "runtime").glob("*.py"), *(REPO / "hf_fast" / "native").glob("*.py"),
             REPO / "hf_fast" / "export" / "artifact.py"]
    bad = re.compile(r"\bimport pickle\b|\bpickle\.(load|loads|Unpickler)\b|torch\.load\(|(?<!def )\beval\(|\bexec\("
                     r"|trust_remote_code\s*=\s*True"
                     r"|allow_pickle\s*=\s*True|load_external_data\s*=\s*True")
    hits = [f"{f.relative_to(REPO)}:{i + 1}: {line.strip()}" for f in files
            for i, line in enumerate(f.read_text().splitlines()) if bad.search(line)]
    assert not hits, hits


def test_artifact_holds_no_pickle(art):
    for p in art.iterdir():
        head = p.read_bytes()[:2]
        assert head not in (b"\x80\x02", b"\x80\x03", b"\x80\x04", b"\x80\x05"), f"{p.name} is a pickle"
        assert p.suffix not in (".pkl", ".pickle", ".bin", ".pt", ".py"), p.name
    assert os.path.isfile(art / "model.onnx")
