"""FastConfig(scope="latency"): cost files (hf_fast/cost_curves.py), the allocation that meets an engine time target
(hf_fast/training/latency.py), its validation, and `hf-fast profile` (hf_fast/profile.py)."""
import json

import numpy as np
import pytest
import torch
from test_training_helpers import ToyDataset, tiny_bert, train_args

from hf_fast.cost_curves import COST_FORMAT, ROLES, CostCurves, CostFileError, engine_shapes, model_key, shape_key
from hf_fast.training import FastConfig, FastTrainer
from hf_fast.training.latency import LatencyModel, allocate, engine_groups
from hf_fast.training.masks import find_prunable_linears

DIMS = (32, 2, 64, 2)  # tiny_bert(): hidden, heads, ffn, layers
SP = [round(0.05 * i, 2) for i in range(20)]


def synthetic_costs(path, dims=DIMS, floor=None, dense=None, crossover=0.0, fixed=1.0, block="4x1",
                    target_shape=(1, 16), mixed=None):
    """A cost file whose per-role engine curves are exactly ``dense[r] * (1 - (1 - floor[r]) * s / 0.95)``: each
    role falls linearly from its dense time to ``floor[r]`` x it at 95%."""
    hidden, heads, ffn, layers = dims
    floor = floor or dict.fromkeys(ROLES, 0.2)
    dense = dense or {"qkv": 3.0, "attn_out": 1.0, "ffn_in": 2.0, "ffn_out": 2.0}
    curve = {r: [dense[r] * (1 - (1 - floor[r]) * s / 0.95) for s in SP] for r in ROLES}
    shapes = engine_shapes(hidden, ffn)
    linears = {shape_key(*shapes[r]): {"dense_ms": dense[r], "sparse_ms": {block: curve[r]}} for r in ROLES}
    esp = [s for s in SP if s >= crossover]
    idx = [SP.index(s) for s in esp]
    model = {"hidden": hidden, "heads": heads, "ffn": ffn, "layers": layers, "fixed_ms": fixed,
             "dense_ms": fixed + layers * sum(dense.values()),
             "sparse_ms": {block: [fixed + layers * sum(curve[r][j] for r in ROLES) for j in idx]}}
    if mixed is not None:  # {role: engine ms with that role dense, the others at 80%}
        model.update(mixed_sparsity=0.8, mixed_ms={block: mixed})
    d = {"format": COST_FORMAT, "version": 1, "target_shape": list(target_shape), "threads": 1, "sparsities": SP,
         "crossover": crossover, "linears": linears, "models": {model_key(*dims): model}, "engine_sparsities": esp,
         "machine": {"cpu": "synthetic", "isa": "test"}}
    path.write_text(json.dumps(d))
    return str(path)


def _latency_model(model, path, block="4x1"):
    layers = find_prunable_linears(model)
    return layers, LatencyModel(CostCurves.load(path), DIMS, block, engine_groups(list(layers), model))


# ------------------------------------------------------------------ the cost model
def test_prediction_is_exact_at_uniform_points_and_follows_the_engine_kernel_choice(tmp_path):
    cc = CostCurves.load(synthetic_costs(tmp_path / "c.json", crossover=0.6))
    m = cc.models[model_key(*DIMS)]
    for j, s in enumerate(cc.engine_sparsities):
        uniform = {(i, r): s for i in range(DIMS[3]) for r in ROLES}
        assert cc.predict_ms(*DIMS, "4x1", uniform) == pytest.approx(m["sparse_ms"]["4x1"][j])
    assert cc.predict_ms(*DIMS, "4x1") == pytest.approx(m["dense_ms"])
    # below the crossover the engine runs the dense kernel: 50% zero blocks cost what dense costs
    half = {(i, r): 0.5 for i in range(DIMS[3]) for r in ROLES}
    assert cc.predict_ms(*DIMS, "4x1", half) == pytest.approx(m["dense_ms"])


def test_a_dense_linear_among_sparse_ones_costs_what_the_profile_measured(tmp_path):
    base = CostCurves.load(synthetic_costs(tmp_path / "a.json", crossover=0.6))

    def one_dense(r):
        return {(i, q): (0.0 if q == r else 0.8) for i in range(2) for q in ROLES}

    # each role dense among sparse Linears measured dearer than the dense engine's share of it says
    mixed = {r: base.predict_ms(*DIMS, "4x1", one_dense(r)) + 0.5 + ROLES.index(r) for r in ROLES}
    cc = CostCurves.load(synthetic_costs(tmp_path / "b.json", crossover=0.6, mixed=mixed))
    for r in ROLES:
        assert cc.predict_ms(*DIMS, "4x1", one_dense(r)) == pytest.approx(mixed[r])
    # every Linear dense is the dense engine as measured
    assert cc.predict_ms(*DIMS, "4x1") == pytest.approx(cc.models[model_key(*DIMS)]["dense_ms"])


def test_linears_beyond_the_last_measured_point_fall_to_the_all_blocks_skipped_engine(tmp_path):
    # a global allocation prunes top layers to 97-100%: their time lies between the 95% point and the engine with
    # every block skipped (fixed_ms, measured), not at the 95% point (which over-predicted such masks by ~6%)
    cc = CostCurves.load(synthetic_costs(tmp_path / "c.json", crossover=0.6, fixed=1.0))
    m = cc.models[model_key(*DIMS)]
    at95 = m["sparse_ms"]["4x1"][cc.engine_sparsities.index(0.95)]

    def uniform(s):
        return cc.predict_ms(*DIMS, "4x1", {(i, r): s for i in range(DIMS[3]) for r in ROLES})

    assert uniform(1.0) == pytest.approx(m["fixed_ms"])
    assert uniform(0.975) == pytest.approx((at95 + m["fixed_ms"]) / 2)
    # one Linear at 99% among 80% ones saves 4/5 of its 95% time
    curves = cc.role_curves(*DIMS, "4x1")
    base = {(i, r): 0.8 for i in range(DIMS[3]) for r in ROLES}
    t95 = float(cc.linear_ms(curves, "ffn_in", 0.95))
    assert cc.predict_ms(*DIMS, "4x1", {**base, (1, "ffn_in"): 0.99}) == pytest.approx(
        cc.predict_ms(*DIMS, "4x1", {**base, (1, "ffn_in"): 0.95}) - 0.8 * t95)


def test_role_split_leaves_out_the_calls_overhead_that_fixed_ms_holds(tmp_path):
    # each Linear timed alone pays the same per-call overhead (the binding, the epilogue) on top of its kept
    # blocks; the engine's all-blocks-skipped time holds that part already, so the split over the roles must use
    # the kept-block time only, or the small Linears get too large a share at high sparsity
    p = tmp_path / "c.json"
    synthetic_costs(p, crossover=0.6)
    truth = CostCurves.load(p).role_curves(*DIMS, "4x1")
    d = json.loads(p.read_text())
    overhead = 0.7
    for rec in d["linears"].values():
        rec["dense_ms"] += overhead
        rec["sparse_ms"]["4x1"] = [t + overhead for t in rec["sparse_ms"]["4x1"]]
        rec["empty_ms"] = {"4x1": overhead}
    p.write_text(json.dumps(d))
    dense, sparse = CostCurves.load(p).role_curves(*DIMS, "4x1")
    for r in ROLES:
        assert dense[r] == pytest.approx(truth[0][r])
        np.testing.assert_allclose(sparse[r], truth[1][r], rtol=1e-9)
    # a file without empty_ms (hf-fast before it) still loads and splits by the whole call times
    for rec in d["linears"].values():
        del rec["empty_ms"]
    p.write_text(json.dumps(d))
    assert CostCurves.load(p).role_curves(*DIMS, "4x1")[1]["attn_out"][-1] > truth[1]["attn_out"][-1] * 1.5
    d["linears"]["32x32"]["empty_ms"] = {"4x1": -1.0}
    p.write_text(json.dumps(d))
    with pytest.raises(CostFileError, match="positive finite"):
        CostCurves.load(p)


def test_profile_points_on_the_crossover_run_the_sparse_kernel():
    # 60% of 110,592 blocks is 66,355.2: rounded down, the "60%" point of the fused qkv ran the DENSE kernel in the
    # engine (zero fraction < the 60% crossover), which made the profile's first sparse point far too slow
    from hf_fast.blocks import block_sparsity
    from hf_fast.profile import random_block_weight
    from hf_fast.runtime.engine import choose_kernel

    rng = np.random.default_rng(0)
    for n, k in ((1152, 384), (384, 384), (1536, 384)):
        w = random_block_weight(rng, n, k, "4x1", 0.6)
        assert block_sparsity(w, (4, 1)) >= 0.6
        assert choose_kernel(w, "4x1", isa="avx512vnni").block == "4x1"
    assert block_sparsity(random_block_weight(rng, 64, 32, "4x1", 1.0), (4, 1)) == 1.0
    assert block_sparsity(random_block_weight(rng, 64, 32, "1x4", 0.5), (1, 4)) == 0.5  # exact stays exact


# ------------------------------------------------------------------ the allocation
def test_allocation_meets_the_target_at_least_lost_score(tmp_path):
    model = tiny_bert()
    layers, lm = _latency_model(model, synthetic_costs(tmp_path / "c.json"))
    scores = {n: torch.rand(m.weight.shape[0] // 4, m.weight.shape[1], generator=torch.Generator().manual_seed(i))
              for i, (n, m) in enumerate(layers.items())}
    dense = lm.dense_ms()
    for speedup in (1.5, 2.0, 3.0):
        target = dense / speedup
        masks, info = allocate(lm, scores, target)
        assert info["predicted_ms"] <= target + 1e-9
        assert info["predicted_ms"] >= 0.995 * target  # not pruned beyond the need (grid step 0.5%)
        # the prediction of the masks, through the file's own per-(layer, role) path, is the allocation's
        sp = {}
        for g in lm.groups:
            kept = sum(int(masks[n].sum()) for n in g.names)
            sp[g.key] = 1.0 - kept / sum(masks[n].numel() for n in g.names)
        assert lm.curves.predict_ms(*DIMS, "4x1", sp) == pytest.approx(info["predicted_ms"])
        # within a group (Q, K and V together) the lowest scores go first
        for g in lm.groups:
            kept = torch.cat([masks[n].flatten() for n in g.names])
            sc = torch.cat([scores[n].flatten() for n in g.names])
            if (~kept).any() and kept.any():
                assert sc[~kept].max() <= sc[kept].min(), g.key


def test_steeper_cost_curves_are_pruned_more_at_equal_scores(tmp_path):
    model = tiny_bert()
    # ffn_out saves 80% of its time by 95% sparsity; ffn_in (same block count, same dense time) only 10%
    floor = {"qkv": 0.5, "attn_out": 0.5, "ffn_in": 0.9, "ffn_out": 0.2}
    layers, lm = _latency_model(model, synthetic_costs(tmp_path / "c.json", floor=floor))
    scores = {n: torch.ones(m.weight.shape[0] // 4, m.weight.shape[1]) for n, m in layers.items()}
    _, info = allocate(lm, scores, lm.dense_ms() / 1.25)
    gs = info["group_sparsity"]
    for i in range(DIMS[3]):
        assert gs[(i, "ffn_out")] > gs[(i, "ffn_in")] + 0.3, gs
    # and at equal curves the lower-scored group goes first
    layers, lm = _latency_model(model, synthetic_costs(tmp_path / "d.json"))
    scores = {n: torch.full((m.weight.shape[0] // 4, m.weight.shape[1]), 10.0 if "output.dense" in n
                            and "attention" not in n else 1.0) for n, m in layers.items()}
    _, info = allocate(lm, scores, lm.dense_ms() / 1.25)
    assert all(info["group_sparsity"][(i, "ffn_out")] < info["group_sparsity"][(i, "ffn_in")] for i in range(2))


def test_allocation_respects_the_crossover_and_keeps_pruned_blocks(tmp_path):
    model = tiny_bert()
    layers, lm = _latency_model(model, synthetic_costs(tmp_path / "c.json", crossover=0.6))
    scores = {n: torch.rand(m.weight.shape[0] // 4, m.weight.shape[1]) for n, m in layers.items()}
    masks, info = allocate(lm, scores, lm.dense_ms() / 1.5)
    # a sparsity below the crossover saves nothing (the engine runs dense), so none is chosen
    assert all(s == 0.0 or s >= 0.6 - 1e-9 for s in info["group_sparsity"].values()), info["group_sparsity"]
    # a later, stricter target never un-prunes a block, even when scores change
    scores2 = {n: torch.rand(s.shape) for n, s in scores.items()}
    masks2, info2 = allocate(lm, scores2, lm.dense_ms() / 2.0, previous=masks)
    assert all(not (masks2[n] & ~masks[n]).any() for n in masks)
    assert info2["predicted_ms"] <= lm.dense_ms() / 2.0 + 1e-9
    # the dense/sparse step makes the time jump (here by up to ~6% of the total per Linear), no further
    assert info["predicted_ms"] >= 0.94 * lm.dense_ms() / 1.5 and info2["predicted_ms"] >= 0.94 * lm.dense_ms() / 2


def test_slack_under_the_target_goes_back_to_the_most_important_blocks():
    from hf_fast.training.latency import _give_back

    t = np.array([3.0, 2.0, 1.0, 0.0])  # time of each candidate (0 .. 3 pruned steps)
    opts = [(None, None, None, None, np.array([0.0, 1.0, 2.0, 3.0]), t),
            (None, None, None, None, np.array([0.0, 10.0, 20.0, 30.0]), t)]
    # both fully pruned (time 0) under a 2.5 target: the high-score group gets its blocks back first
    picks, time = _give_back(opts, [3, 3], 0.0, 2.5)
    assert picks == [3, 1] and time == pytest.approx(2.0)
    picks, time = _give_back(opts, [3, 3], 0.0, 0.5)
    assert picks == [3, 3] and time == 0.0  # no move fits


def test_no_linear_is_pruned_beyond_the_measured_range_even_inside_qkv(tmp_path):
    model = tiny_bert()
    layers, lm = _latency_model(model, synthetic_costs(tmp_path / "c.json"))
    # the queries score lowest of all: the fused qkv would lose every query block first
    scores = {n: torch.full((m.weight.shape[0] // 4, m.weight.shape[1]), 0.0 if n.endswith("query") else 1.0)
              + 0.01 * torch.rand(m.weight.shape[0] // 4, m.weight.shape[1]) for n, m in layers.items()}
    masks, info = allocate(lm, scores, lm.dense_ms() / 2.0)
    q = [n for n in masks if n.endswith("query")]
    assert all(info["group_sparsity"][(i, "qkv")] > 0.34 for i in range(2))  # more than all the queries' blocks
    assert all(1.0 - float(masks[n].float().mean()) <= 0.95 + 1e-9 for n in masks)
    assert all(1.0 - float(masks[n].float().mean()) >= 0.9 for n in q)  # still pruned first, up to the limit


# ------------------------------------------------------------------ FastTrainer end to end
def test_fast_trainer_reaches_the_latency_target(tmp_path):
    path = synthetic_costs(tmp_path / "c.json")
    model = tiny_bert()
    fc = FastConfig(scope="latency", target_speedup=2.0, cost_file=path, block="4x1", end_step=6, frequency=2)
    tr = FastTrainer(model=model, args=train_args(tmp_path / "run", max_steps=10, logging_steps=2), fast_config=fc,
                     train_dataset=ToyDataset(64))
    tr.train()
    cb = tr.pruning_callback
    lat = model.config.hf_fast["latency"]
    dense = CostCurves.load(path).predict_ms(*DIMS, "4x1")
    assert lat["dense_ms"] == pytest.approx(dense) and lat["final_target_ms"] == pytest.approx(dense / 2.0)
    assert lat["target_ms"] == pytest.approx(dense / 2.0)
    assert dense / 2.0 * 0.97 <= lat["predicted_ms"] <= dense / 2.0 + 1e-9
    assert cb.at_final_sparsity() and set(lat["layer_sparsity"]) == set(cb.layer_sparsity())
    assert model.config.hf_fast["sparsity_target"] is None  # the time target set the sparsity
    # the prediction of the weights themselves: zero blocks per engine Linear
    from hf_fast.blocks import block_sparsity
    from hf_fast.models import registry

    fam = registry.get("bert")
    zero = {}
    for n, m in cb._layers.items():
        i, role = fam.linear_role(n)
        key = (i, "qkv" if role in "qkv" else role)
        zero.setdefault(key, []).append(block_sparsity(m.weight.detach(), "4x1"))
    sp = {k: float(np.mean(v)) for k, v in zero.items()}
    assert CostCurves.load(path).predict_ms(*DIMS, "4x1", sp) == pytest.approx(lat["predicted_ms"], rel=1e-6)
    # the time target ramped along the schedule, logged at every logging step
    hist = [h for h in tr.state.log_history if "latency_predicted_ms" in h]
    assert hist and hist[0]["latency_target_ms"] > hist[-1]["latency_target_ms"]
    assert all(h["latency_predicted_ms"] <= h["latency_target_ms"] + 1e-6 for h in hist)


def test_no_cost_file_probes_this_machine_with_a_warning(tmp_path, monkeypatch):
    from hf_fast.training import latency

    calls = []

    def fake_probe(dims, block, target_shape, threads=1):
        calls.append((dims, block, tuple(target_shape)))
        return CostCurves.load(synthetic_costs(tmp_path / "probe.json", block=block))

    monkeypatch.setattr(latency, "probe_curves", fake_probe)
    fc = FastConfig(scope="latency", target_latency_ms=10.0, block="4x1")
    with pytest.warns(UserWarning, match="quick probe of THIS machine"):
        FastTrainer(model=tiny_bert(), args=train_args(tmp_path, max_steps=4), fast_config=fc,
                    train_dataset=ToyDataset(16))
    assert calls == [(DIMS, "4x1", (1, 128))]


def test_the_real_probe_returns_usable_curves():
    from hf_fast.training.latency import probe_curves

    cc = probe_curves(DIMS, "4x1", (1, 8))
    cc.check_model(*DIMS, "4x1")  # every Linear shape, the engine timings, the block
    assert cc.target_shape == (1, 8) and cc.machine["isa"] and cc.engine_sparsities[0] >= cc.crossover
    assert probe_curves(DIMS, "4x1", (1, 8)) is cc  # measured once per process


# ------------------------------------------------------------------ validation
@pytest.mark.parametrize("kw, match", [
    (dict(), "exactly one of target_speedup"),
    (dict(target_speedup=2.0, target_latency_ms=3.0), "exactly one of target_speedup"),
    (dict(target_speedup=-1.0), "target_speedup must be a positive number"),
    (dict(target_speedup=1.0), "must exceed 1"),
    (dict(target_latency_ms=0), "target_latency_ms must be a positive number"),
    (dict(target_latency_ms=float("nan")), "target_latency_ms must be a positive number"),
    (dict(target_speedup=2.0, target_shape=(1,)), r"target_shape must be \(batch, seq\)"),
    (dict(target_speedup=2.0, target_shape=(0, 128)), r"target_shape must be \(batch, seq\)"),
    (dict(target_speedup=2.0, min_layer_sparsity=0.3), "min_layer_sparsity applies to scope='global'"),
    (dict(target_speedup=2.0, include=["classifier"]), "include= does not apply"),
    (dict(target_speedup=2.0, block="4x16", allow_any_block=True), "needs a block the engine's sparse kernels run"),
])
def test_latency_config_errors(kw, match):
    with pytest.raises(ValueError, match=match):
        FastConfig(scope="latency", **kw)


def test_latency_options_need_latency_scope():
    with pytest.raises(ValueError, match="target_speedup applies to scope='latency'"):
        FastConfig(scope="global", target_speedup=2.0)


def test_cost_file_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="hf-fast profile"):
        FastConfig(scope="latency", target_speedup=2.0, cost_file=str(tmp_path / "missing.json"))
    p = tmp_path / "c.json"
    synthetic_costs(p)
    d = json.loads(p.read_text())
    for change, match in ((dict(version=99), "version 99 is not supported"), (dict(format="x"), "not an hf-fast"),
                          (dict(threads="two"), "malformed"), (dict(sparsities=[0.5, 0.2]), "sparsities")):
        (tmp_path / "bad.json").write_text(json.dumps({**d, **change}))
        with pytest.raises(CostFileError, match=match):
            FastConfig(scope="latency", target_speedup=2.0, cost_file=str(tmp_path / "bad.json"))
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(CostFileError, match="not readable JSON"):
        FastConfig(scope="latency", target_speedup=2.0, cost_file=str(tmp_path / "bad.json"))
    with pytest.raises(ValueError, match=r"profiled at \(batch, seq\) = \(1, 16\)"):
        FastConfig(scope="latency", target_speedup=2.0, cost_file=str(p), target_shape=(8, 128))
    fc = FastConfig(scope="latency", target_speedup=2.0, cost_file=str(p), target_shape=[1, 16])
    assert FastConfig.from_dict(json.loads(fc.to_json_string())) == fc


def test_cost_file_must_describe_the_model(tmp_path):
    # a file profiled for another model: the trainer refuses it before training, naming the shapes
    p = synthetic_costs(tmp_path / "c.json", dims=(64, 2, 128, 2))
    fc = FastConfig(scope="latency", target_speedup=2.0, cost_file=p, block="4x1")
    with pytest.raises(CostFileError, match=r"no curve for the model's Linear shapes \['qkv 96x32'"):
        FastTrainer(model=tiny_bert(), args=train_args(tmp_path, max_steps=4), fast_config=fc,
                    train_dataset=ToyDataset(16))
    p = synthetic_costs(tmp_path / "d.json", block="1x4")
    fc = FastConfig(scope="latency", target_speedup=2.0, cost_file=p, block="4x1")
    with pytest.raises(CostFileError, match="no 4x1 curves"):
        FastTrainer(model=tiny_bert(), args=train_args(tmp_path, max_steps=4), fast_config=fc,
                    train_dataset=ToyDataset(16))


def test_unreachable_target_is_refused_with_the_figures(tmp_path):
    p = synthetic_costs(tmp_path / "c.json")
    fc = FastConfig(scope="latency", target_speedup=50.0, cost_file=p, block="4x1")
    with pytest.raises(ValueError, match=r"target_speedup=50.0 .* cannot be reached: .* with every Linear at 95%"):
        FastTrainer(model=tiny_bert(), args=train_args(tmp_path, max_steps=4), fast_config=fc,
                    train_dataset=ToyDataset(16))


# ------------------------------------------------------------------ hf-fast profile
def test_cli_profile_writes_a_valid_cost_file(tmp_path, capsys):
    from hf_fast.cli import main

    out = tmp_path / "costs.json"
    args = ["profile", "--dims", "32,2,64,2", "--shapes", "64x32", "--batch", "1", "--seq", "8", "--budget", "0.01",
            "--step", "0.1", "--blocks", "4x1", "--out", str(out)]
    assert main(args) == 0
    cc = CostCurves.load(out)
    cc.check_model(*DIMS, "4x1")
    assert cc.target_shape == (1, 8) and cc.threads == 1 and cc.machine["isa"]
    assert set(cc.linears) == {"96x32", "32x32", "64x32", "32x64"}
    assert len(cc.linears["64x32"]["sparse_ms"]["4x1"]) == 10 and cc.sparsities[-1] == pytest.approx(0.9)
    assert [p.name for p in tmp_path.iterdir()] == ["costs.json"]  # no temporary file left
    assert main(args) == 1 and "exists" in capsys.readouterr().err  # never overwrites without --overwrite
    # --model reads the dimensions from a checkpoint's config.json
    tiny_bert().config.save_pretrained(tmp_path / "ckpt")
    assert main(["profile", "--model", str(tmp_path / "ckpt"), "--seq", "8", "--budget", "0.01", "--step", "0.1",
                 "--blocks", "1x4", "--out", str(tmp_path / "m.json")]) == 0
    CostCurves.load(tmp_path / "m.json").check_model(*DIMS, "1x4")
    assert main(["profile", "--out", str(tmp_path / "x.json")]) == 1
    assert main(["profile", "--shapes", "64by32", "--out", str(tmp_path / "x.json")]) == 1
    assert "NxK" in capsys.readouterr().err
