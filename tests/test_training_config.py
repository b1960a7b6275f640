"""FastConfig/DistillConfig: defaults, JSON/YAML round trip, and bad configs rejected at construction."""
import pytest
from test_training_helpers import ToyDataset, tiny_bert, tiny_distilbert, train_args

from hf_fast.training.config import DistillConfig, FastConfig, resolve_block


def test_defaults_are_the_paper_recipe():
    c = FastConfig()
    assert c.sparsity == 0.8 and c.block == "auto" and c.schedule == "cubic"
    assert c.distill.temperature == 2.0 and c.distill.alpha == 0.9
    assert c.quantization is None


@pytest.mark.parametrize("ext", ["json", "yaml"])
def test_round_trip(tmp_path, ext):
    c = FastConfig(sparsity=0.5, block=(4, 16), allow_any_block=True, score="first_order", scope="global",
                   end_step=100, frequency=5,
                   include=["classifier"], distill=DistillConfig(temperature=3.0, alpha=0.5, layer_map={0: 1}),
                   quantization="qat")
    p = tmp_path / f"fc.{ext}"
    c.save(p)
    d = FastConfig.load(p)
    assert d == c
    assert d.score == "movement" and d.block == (4, 16) and d.distill.layer_map == {0: 1}
    assert FastConfig.from_dict(c.to_dict()) == c


@pytest.mark.parametrize("kw, match", [
    (dict(sparsity=1.0), "sparsity"),
    (dict(sparsity=-0.1), "sparsity"),
    (dict(sparsity=True), "sparsity"),
    (dict(block="4y1"), "unknown block"),
    (dict(block="0x4"), ">= 1"),
    (dict(schedule="linear"), "schedule"),
    (dict(score="random"), "score"),
    (dict(scope="row"), "scope"),
    (dict(scope="global", min_layer_sparsity=0.9), "min_layer_sparsity"),
    (dict(scope="layer", min_layer_sparsity=0.5), "scope='global'"),
    (dict(block="3x3"), "no native kernel"),
    (dict(block=(4, 16)), "no native kernel"),
    (dict(block="4x1", allow_any_block="yes"), "allow_any_block"),
    (dict(start_step=50, end_step=10), "after end_step"),
    (dict(end_step=1.5), "fraction"),
    (dict(frequency=0), "frequency"),
    (dict(quantization="int4"), "quantization"),
    (dict(initial_sparsity=0.9, sparsity=0.5), "initial_sparsity"),
    (dict(distill={"temperature": 0}), "temperature"),
    (dict(distill={"alpha": 1.5}), "alpha"),
    (dict(distill={"beta": 1}), "unknown DistillConfig"),
])
def test_bad_values(kw, match):
    with pytest.raises(ValueError, match=match):
        FastConfig(**kw)


def test_block_must_have_a_native_kernel():
    """Only the shapes the native kernels run are accepted by default; the error names them."""
    from hf_fast import native
    from hf_fast.blocks import FAST_BLOCKS, KERNEL_BLOCKS

    assert set(KERNEL_BLOCKS) == set(native.BLOCK_SHAPES)
    assert set(FAST_BLOCKS) == set(native.BLOCK_SHAPES) | {"4x4"}  # 4x4 tiles run on the 4x1 kernel
    with pytest.raises(ValueError) as e:
        FastConfig(block="3x3")
    assert all(b in str(e.value) for b in ("4x1", "1x4", "4x4", "'auto'", "allow_any_block=True"))
    with pytest.raises(ValueError, match="scope='latency' needs a block the engine's sparse kernels run"):
        FastConfig(block="4x4", scope="latency", target_speedup=2.0)  # cost curves exist per kernel block
    for ok in ("4x1", "1x4", "4x4", (4, 1), [1, 4], " 4 x 1 ", "auto"):
        FastConfig(block=ok)
    c = FastConfig(block="3x3", allow_any_block=True)  # research use
    assert FastConfig.from_dict(c.to_dict()) == c
    with pytest.raises(ValueError, match="no native kernel"):
        FastConfig.from_dict({**c.to_dict(), "allow_any_block": False})


def test_unknown_key():
    with pytest.raises(ValueError, match="unknown FastConfig option"):
        FastConfig.from_dict({"sparsity": 0.5, "blocks": "4x1"})


def test_resolve_block_names():
    assert resolve_block("4x1") == "4x1"
    assert resolve_block((1, 4)) == "1x4"
    assert resolve_block(" 32 x 32 ") == "32x32"


def test_auto_block_is_read_from_the_runtime(monkeypatch, tmp_path):
    """block="auto" asks hf_fast.native.preferred_block() (stubbed: its measurement is the runtime's test)
    and the resolved shape is recorded on the model."""
    from hf_fast import native

    assert hasattr(native, "preferred_block")
    monkeypatch.setattr(native, "preferred_block", lambda *a, **k: "1x4")
    assert resolve_block("auto") == "1x4"
    model = tiny_bert()
    tr = _trainer(tmp_path, model, fast_config=FastConfig(block="auto"))
    assert tr.pruning_callback.block == "1x4"
    assert model.config.hf_fast["block"] == "1x4" and model.config.hf_fast["block_requested"] == "auto"
    monkeypatch.setattr(native, "preferred_block", lambda *a, **k: "3x3")  # does not divide 32x64 layers
    with pytest.raises(ValueError, match="does not divide"):
        _trainer(tmp_path, tiny_bert(), fast_config=FastConfig(block="auto"))


def _trainer(tmp_path, model, **kw):
    from hf_fast.training import FastTrainer

    return FastTrainer(model=model, args=train_args(tmp_path), train_dataset=ToyDataset(8), **kw)


def test_block_not_dividing_layer_fails_at_construction(tmp_path):
    with pytest.raises(ValueError, match="does not divide"):
        _trainer(tmp_path, tiny_bert(), fast_config=FastConfig(block="3x1", allow_any_block=True))
    with pytest.raises(ValueError, match="does not divide"):  # in=32 for q_lin
        _trainer(tmp_path, tiny_distilbert(), fast_config=FastConfig(block="1x64", allow_any_block=True))


def test_teacher_vocab_mismatch(tmp_path):
    with pytest.raises(ValueError, match="vocab"):
        _trainer(tmp_path, tiny_bert(), teacher=tiny_bert(vocab=200), fast_config=FastConfig(block="4x1"))


def test_teacher_head_mismatch(tmp_path):
    with pytest.raises(ValueError, match="heads do not match"):
        _trainer(tmp_path, tiny_bert(), teacher=tiny_bert("qa"), fast_config=FastConfig(block="4x1"))
    with pytest.raises(ValueError, match="num_labels"):
        _trainer(tmp_path, tiny_bert(), teacher=tiny_bert(num_labels=3), fast_config=FastConfig(block="4x1"))


def test_hidden_distillation_needs_equal_hidden_sizes(tmp_path):
    fc = FastConfig(block="4x1", distill=DistillConfig(hidden_weight=1.0))
    with pytest.raises(ValueError, match="hidden sizes"):
        _trainer(tmp_path, tiny_bert(), teacher=tiny_bert(hidden=64), fast_config=fc)


def test_unknown_architecture(tmp_path):
    from transformers import GPT2Config, GPT2ForSequenceClassification

    m = GPT2ForSequenceClassification(GPT2Config(vocab_size=64, n_embd=32, n_layer=1, n_head=2))
    with pytest.raises(ValueError, match="no encoder Linear layers found.*searched"):
        _trainer(tmp_path, m, fast_config=FastConfig(block="4x1"))


@pytest.mark.parametrize("ext", ["json", "yaml"])
def test_saving_over_a_config_on_a_full_disk_keeps_it(tmp_path, monkeypatch, ext):
    """A save that fails midway (disk full) leaves the config file as it was, not truncated."""
    from _disk_full import fill_disk

    path = tmp_path / f"fast.{ext}"
    FastConfig(sparsity=0.7, block="4x1").save(path)
    before = path.read_bytes()
    with monkeypatch.context() as m:
        fill_disk(m, tmp_path)
        with pytest.raises(OSError, match="No space left"):
            FastConfig(sparsity=0.9, block="1x4").save(path)
    assert path.read_bytes() == before
    assert FastConfig.load(path).sparsity == 0.7
    assert [p.name for p in tmp_path.iterdir()] == [path.name]  # no temporary left behind
