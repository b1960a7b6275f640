"""QAT fake-quant: the exporter's int8 scheme (per-channel symmetric s8 weights, per-tensor asymmetric u8
activations), straight-through gradients, and a QAT run through FastTrainer."""
import pytest
import torch
from test_training_helpers import ToyDataset, tiny_bert, train_args

from hf_fast.training import FastConfig, FastTrainer
from hf_fast.training.quantization import activation_qparams, fake_quant_activation, fake_quant_weight


def test_weight_fake_quant_per_channel_symmetric():
    w = torch.tensor([[0.5, -1.27, 0.0, 0.3], [2.54, 1.0, -0.01, 0.0]], requires_grad=True)
    q = fake_quant_weight(w)
    s0, s1 = 1.27 / 127, 2.54 / 127
    ref = torch.tensor([[round(0.5 / s0) * s0, -1.27, 0.0, round(0.3 / s0) * s0],
                        [2.54, round(1.0 / s1) * s1, round(-0.01 / s1) * s1, 0.0]])
    torch.testing.assert_close(q, ref, rtol=0, atol=1e-6)
    assert q[0, 2] == 0 and q[1, 3] == 0  # pruned zeros stay exactly zero
    q.sum().backward()
    assert torch.equal(w.grad, torch.ones_like(w))  # straight-through


def test_activation_fake_quant_per_tensor_asymmetric():
    scale, zp = activation_qparams(-1.0, 3.0)
    assert scale == pytest.approx(4.0 / 255) and zp == 64
    x = torch.tensor([-2.0, -1.0, 0.0, 0.01, 3.0, 5.0])
    q = fake_quant_activation(x, -1.0, 3.0)
    ref = (torch.clamp(torch.round(x / scale) + zp, 0, 255) - zp) * scale
    torch.testing.assert_close(q, ref)
    assert q[2] == 0  # zero is exact
    assert q[0] == pytest.approx(-64 * scale) and q[-1] == pytest.approx((255 - 64) * scale)
    assert activation_qparams(0.5, 2.0)[1] == 0  # the range always holds 0


def test_qat_run(tmp_path):
    model = tiny_bert()
    tr = FastTrainer(model=model, args=train_args(tmp_path, max_steps=12),
                     fast_config=FastConfig(sparsity=0.5, block="4x1", end_step=6, frequency=2,
                                            score="magnitude", scope="layer", quantization="qat"),
                     train_dataset=ToyDataset(32))
    seen = {}
    lin = model.bert.encoder.layer[0].attention.self.query

    def hook(mod, inp, out):
        seen[tr.state.global_step] = "forward" in mod.__dict__
    lin.register_forward_hook(hook)
    tr.train()
    assert seen[3] is False and seen[8] is True  # fake-quant from end_step (6) on
    assert "forward" not in lin.__dict__  # float forward restored at the end
    q = model.config.hf_fast["qat"]
    assert q["weights"]["qmin"] == -127 and q["activations"]["dtype"] == "uint8"
    lo, hi = q["activation_ranges"]["bert.encoder.layer.0.attention.self.query"]
    assert lo < 0 < hi
    from hf_fast.blocks import block_sparsity
    assert block_sparsity(lin.weight, "4x1") == pytest.approx(0.5)


def test_export_uses_the_learned_qat_ranges(tmp_path):
    """The exporter quantizes each Linear input with the range QAT trained, not a fresh calibration."""
    import numpy as np
    import onnx
    from onnx import numpy_helper

    from hf_fast.export import export
    from hf_fast.export.onnx_export import module_path

    model = tiny_bert()
    tr = FastTrainer(model=model, args=train_args(tmp_path / "run", max_steps=6),
                     fast_config=FastConfig(sparsity=0.0, quantization="qat", qat_start_step=0),
                     train_dataset=ToyDataset(32))
    tr.train()
    ranges = model.config.hf_fast["qat"]["activation_ranges"]
    calib = [{"input_ids": [1, 5, 7, 9, 2], "attention_mask": [1] * 5}] * 4
    art = export(model, None, tmp_path / "qat", calibration_dataset=calib, task="text-classification",
                 progress=False)
    m = onnx.load(str(art / "model.onnx"))
    inits = {i.name: numpy_helper.to_array(i) for i in m.graph.initializer}
    producer = {o: n for n in m.graph.node for o in n.output}
    checked = 0
    for n in m.graph.node:
        if n.op_type != "MatMul" or n.input[0] not in producer or producer[n.input[0]].op_type != "DequantizeLinear":
            continue
        lo, hi = ranges[module_path(n.name)]
        scale = float(inits[producer[n.input[0]].input[1]])
        if "query" in n.name or "key" in n.name or "value" in n.name:  # Q, K, V share an input: union of ranges
            qkv = [ranges[module_path(n.name).rsplit(".", 1)[0] + "." + k] for k in ("query", "key", "value")]
            lo, hi = min(r[0] for r in qkv), max(r[1] for r in qkv)
        assert scale == pytest.approx((max(hi, 0) - min(lo, 0)) / 255.0, rel=1e-5)
        checked += 1
    assert checked == 12  # 2 layers x 6 Linears
    import json
    assert json.loads((art / "fast_config.json").read_text())["quantization"]["calibration_method"] == "qat"
    # a partial set of ranges is refused rather than mixed with a calibration
    model.config.hf_fast["qat"]["activation_ranges"].pop("bert.encoder.layer.1.output.dense")
    with pytest.raises(ValueError, match="miss 1 quantized layers"):
        export(model, None, tmp_path / "qat2", calibration_dataset=calib, task="text-classification", progress=False)
    # ... unless asked to calibrate
    export(model, None, tmp_path / "qat3", calibration_dataset=calib, task="text-classification", progress=False,
           use_qat_ranges=False)
    assert np.isfinite(scale)
