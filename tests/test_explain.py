"""FastModel.explain() and `hf-fast info DIR` (issue 18, item 7): per layer and Linear, the zero-block fraction, the
kernel that runs it (sparse or dense) and why, the attention path, the ISA and kernel names; on ONNX Runtime, why."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import onnx
import pytest

pytest.importorskip("torch")
from _export_helpers import tiny_model  # noqa: E402
from _fuzz_helpers import micro_calibration, refresh_sha  # noqa: E402

from hf_fast import native  # noqa: E402
from hf_fast.runtime import FastModelForSequenceClassification  # noqa: E402
from hf_fast.runtime.engine import (  # noqa: E402
    SPARSE_FROM_TOKENS_BY_ISA,
    SPARSE_MIN_FRACTION,
    SPARSE_MIN_FRACTION_BY_ISA,
)

VOCAB = 64
# zero-block fraction kept per layer: layer 0 high (sparse on every ISA), layer 1 dense, layer 2 in between (sparse on
# avx2 and ref, whose crossover is 30%; on avx512vnni, whose crossover is 60%, sparse in calls of >= 32 tokens only)
ZERO = {0: 0.85, 1: 0.0, 2: 0.45}


@pytest.fixture(scope="module")
def pruned(tmp_path_factory):
    import torch

    from hf_fast.export import export

    m = tiny_model("bert", "text-classification", VOCAB, seed=3, layers=3, hidden=32, heads=2, ffn=64, max_pos=16)
    g = torch.Generator().manual_seed(3)
    with torch.no_grad():
        for name, mod in m.named_modules():
            if isinstance(mod, torch.nn.Linear) and ".layer." in name:
                frac = ZERO[int(name.split(".layer.")[1].split(".")[0])]
                rows, cols = mod.weight.shape[0] // 4, mod.weight.shape[1]
                keep = torch.ones(rows * cols)
                keep[torch.randperm(rows * cols, generator=g)[: round(frac * rows * cols)]] = 0
                mod.weight.mul_(keep.view(rows, cols).repeat_interleave(4, 0))
    return export(m, None, tmp_path_factory.mktemp("pruned") / "a", calibration_dataset=micro_calibration("bert"),
                  task="text-classification", block="4x1", progress=False)


def _linears(rec, layer):
    return {r["linear"]: r for r in rec["layers"][layer]["linears"]}


def test_sparse_and_dense_layers_are_reported_as_what_runs_them(pruned, capsys):
    model = FastModelForSequenceClassification.from_pretrained(pruned)
    rec = model.explain(as_dict=True)
    assert rec["backend"] == "native" and rec["fallback_reason"] is None
    assert rec["isa"] == native.active_isa() == model.backend.engine.isa
    fc = model.fast_config
    for name, r in _linears(rec, 0).items():
        assert r["kernel"] == "sparse 4x1" and r["zero_blocks"] > 0.8, r
        assert "crossover" in r["reason"]
        assert r["kernel_impl"] == model.backend.engine.packed[f"layers.0.{name}"].kernel
    # the stacked qkv's fraction is the mean of the exporter's measurements of Q, K and V (same sizes)
    want = np.mean([fc["sparsity"][f"bert.encoder.layer.0.attention.self.{p}"] for p in ("query", "key", "value")])
    assert _linears(rec, 0)["qkv"]["zero_blocks"] == pytest.approx(want, abs=1e-6)
    for r in _linears(rec, 1).values():
        assert r["kernel"] == "dense" and r["zero_blocks"] < 0.05
        assert r["reason"].startswith("below the sparse/dense crossover")
    for layer in rec["layers"]:
        assert layer["attention"] == "fp32"
        assert layer["attention_kernel"] == native.op_kernel("attention_f32", rec["isa"], 16)
    assert rec["kernels"]["layernorm"] == native.native_info()["kernels"]["layernorm"]
    text = model.explain()
    assert isinstance(text, str) and "sparse 4x1" in text and "below the sparse/dense crossover" in text
    lines = text.splitlines()
    assert lines[lines.index("") + 1].split()[:5] == ["layer", "linear", "shape", "zero", "blocks"]
    assert capsys.readouterr().out == ""  # explain() prints nothing itself


@pytest.mark.parametrize("isa", native.BUILT_ISA_NAMES)  # unsupported ones skip visibly (conftest.py)
def test_the_crossover_of_the_isa_decides_a_half_pruned_layer(pruned, isa):
    """Why a 45%-pruned model runs its short calls dense on AVX-512 VNNI: below 60% zero blocks the dense kernel wins
    calls of fewer than 32 tokens there and the sparse one longer calls, so the Linear is packed for both."""
    model = FastModelForSequenceClassification.from_pretrained(pruned, isa=isa)
    rec = model.explain(as_dict=True)
    crossover = SPARSE_MIN_FRACTION_BY_ISA.get(isa, SPARSE_MIN_FRACTION)
    by_call = dict(SPARSE_FROM_TOKENS_BY_ISA.get(isa, ()))  # {fraction: tokens}
    assert rec["isa"] == isa and rec["crossover"] == crossover
    for r in _linears(rec, 2).values():
        assert 0.4 < r["zero_blocks"] < 0.5
        assert isa in r["reason"] and f"{crossover:.0%}" in r["reason"]
        assert r["kernel_impl"].split("-")[0] == isa  # e.g. "avx2-s16"
        pl = model.backend.engine.packed[f"layers.2.{r['linear']}"]
        if by_call:  # the ISA's crossover depends on the call: packed for both kernels
            rows = min(n for f, n in by_call.items() if r["zero_blocks"] >= f)
            assert r["kernel"] == f"sparse 4x1, dense < {rows} tokens" and r["sparse_from_tokens"] == rows, r
            assert not pl.runs_sparse(rows - 1) and pl.runs_sparse(rows)
        else:
            assert r["kernel"] == ("sparse 4x1" if r["zero_blocks"] >= crossover else "dense"), r
            assert pl.alternative is None and r["sparse_from_tokens"] is None


def test_a_pack_cache_hit_explains_the_same(pruned):
    first = FastModelForSequenceClassification.from_pretrained(pruned)
    second = FastModelForSequenceClassification.from_pretrained(pruned)
    assert second.backend.pack_cache == "hit" and second.backend.engine.kernel_choices == {}
    a, b = first.explain(as_dict=True), second.explain(as_dict=True)
    a.pop("pack_cache"), b.pop("pack_cache")
    assert a == b


def test_onnxruntime_backend_reports_why(pruned):
    model = FastModelForSequenceClassification.from_pretrained(pruned, backend="onnxruntime")
    rec = model.explain(as_dict=True)
    assert rec["backend"] == "onnxruntime" and "backend='onnxruntime'" in rec["fallback_reason"]
    assert rec["native_engine"].startswith("can run this graph")
    assert all(r["kernel"] == "dense (ONNX Runtime)" for layer in rec["layers"] for r in layer["linears"])
    assert _linears(rec, 0)["attention.output.dense"]["zero_blocks"] > 0.8
    model.backend.fallback_reason = "the engine cannot plan this graph: ..."  # what a fallback sets
    assert "because the engine cannot plan this graph" in model.explain()


def test_a_graph_the_engine_cannot_plan_is_named(pruned, tmp_path):
    import shutil

    d = tmp_path / "sigmoid"
    shutil.copytree(pruned, d)
    m = onnx.load(str(d / "model.onnx"))
    out = m.graph.output[0].name
    for n in m.graph.node:
        n.output[:] = [o + "_pre" if o == out else o for o in n.output]
    m.graph.node.append(onnx.helper.make_node("Sigmoid", [out + "_pre"], [out], name="my_sigmoid"))
    onnx.save(m, str(d / "model.onnx"))
    refresh_sha(d)
    rec = FastModelForSequenceClassification.from_pretrained(d, backend="onnxruntime").explain(as_dict=True)
    assert rec["native_engine"].startswith("cannot run this graph") and "Sigmoid" in rec["native_engine"]


def test_cli_info_dir_prints_the_table(pruned, capsys):
    from hf_fast.cli import main

    assert main(["info", str(pruned)]) == 0
    out = capsys.readouterr().out
    assert "layer  linear" in out and "sparse 4x1" in out and "dense" in out and f"ISA {native.active_isa()}" in out
    assert main(["info", str(pruned), "--backend", "onnxruntime", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["backend"] == "onnxruntime"


def test_hf_fast_isa_ref_shows_the_reference_kernels(pruned):
    env = {**os.environ, "HF_FAST_ISA": "ref"}
    r = subprocess.run([sys.executable, "-m", "hf_fast.cli", "info", str(pruned), "--json"], env=env,
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    rec = json.loads(r.stdout)
    assert rec["isa"] == "ref" and rec["isa_forced_by_env"] == "ref"
    assert set(rec["kernels"].values()) == {"ref"}
    assert {r["kernel_impl"] for layer in rec["layers"] for r in layer["linears"]} == {"ref"}
    assert {layer["attention_kernel"] for layer in rec["layers"]} == {"ref"}


def test_4x4_tiles_are_reported_where_the_kernel_reads_them_interleaved(tmp_path):
    """A model pruned in 4x4 tiles (FastConfig(block="4x4")): its artifact block is 4x4, each Linear runs on the 4x1
    kernel on AVX-512 VNNI, where every kept group of 4 output channels is read as pre-interleaved tiles (impl names
    them); on other ISAs there are none. A 4x1-pruned model has none either."""
    import torch

    from hf_fast.export import export
    from hf_fast.runtime.explain import explain

    m = tiny_model("bert", "text-classification", VOCAB, seed=4, layers=1, hidden=32, heads=2, ffn=64, max_pos=16)
    g = torch.Generator().manual_seed(4)
    with torch.no_grad():
        for name, mod in m.named_modules():
            if isinstance(mod, torch.nn.Linear) and ".layer." in name:
                rows, cols = mod.weight.shape[0] // 4, mod.weight.shape[1] // 4
                keep = (torch.rand(rows, cols, generator=g) >= 0.8).float()
                keep[:, 0] = 1  # every group keeps a tile
                mod.weight.mul_(keep.repeat_interleave(4, 0).repeat_interleave(4, 1))
    d = export(m, None, tmp_path / "t", calibration_dataset=micro_calibration("bert"), task="text-classification",
               block="4x4", progress=False)
    for isa in native.supported_isas():
        rec = explain(FastModelForSequenceClassification.from_pretrained(d, isa=isa))
        assert rec["artifact_block"] == "4x4"
        lin = _linears(rec, 0)
        for r in lin.values():
            # equal 4x1 / 1x4 zero fractions: 4x1 on VNNI (the interleaved tiles), 1x4 elsewhere
            assert r["kernel"].startswith("sparse 4x1" if isa == "avx512vnni" else "sparse 1x4")
            expect = r["shape"][0] // 4 if isa == "avx512vnni" else 0
            assert r["quad_groups"] == expect
            assert ("4x4 tiles" in r["kernel_impl"]) == (isa == "avx512vnni")


def test_4x1_blocks_have_no_quad_groups(pruned):
    from hf_fast.runtime.explain import explain

    rec = explain(FastModelForSequenceClassification.from_pretrained(pruned))
    assert all(r["quad_groups"] == 0 and "4x4 tiles" not in r["kernel_impl"]
               for layer in range(3) for r in _linears(rec, layer).values())
