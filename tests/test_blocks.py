import numpy as np
import pytest
import torch

from hf_fast.blocks import block_name, block_nonzero_mask, block_sparsity, expand_block_mask, parse_block


def test_parse_names_and_tuples():
    assert parse_block("4x1") == (4, 1) and parse_block("1x4") == (1, 4) and parse_block((32, 32)) == (32, 32)
    assert block_name((4, 16)) == "4x16"
    for bad in ["4by1", "0x4", (0, 1), "auto", 4, (1, 2, 3)]:
        with pytest.raises(ValueError):
            parse_block(bad)


def test_4x1_is_four_output_rows_one_input_column():
    w = np.zeros((8, 3), np.int8)
    w[4:8, 1] = 1  # one 4x1 block: rows 4..7 of column 1
    nz = block_nonzero_mask(w, "4x1")
    assert nz.shape == (2, 3) and nz.sum() == 1 and nz[1, 1]
    assert block_sparsity(w, "4x1") == pytest.approx(5 / 6)
    # the same weight viewed as 1x4 blocks is not divisible along in=3
    with pytest.raises(ValueError, match="does not divide"):
        block_sparsity(w, "1x4")


def test_expand_roundtrip_numpy_and_torch():
    rng = np.random.default_rng(0)
    m = rng.random((6, 5)) > 0.5
    e = expand_block_mask(m, "4x1")
    assert e.shape == (24, 5)
    np.testing.assert_array_equal(block_nonzero_mask(e, "4x1"), m)
    t = expand_block_mask(torch.from_numpy(m), "1x4")
    assert tuple(t.shape) == (6, 20)
    np.testing.assert_array_equal(block_nonzero_mask(t, "1x4"), m)


def test_overall_sparsity_weights_layers_by_size():
    import torch

    from hf_fast.blocks import overall_sparsity

    small, big = torch.nn.Linear(4, 8), torch.nn.Linear(4, 24)  # weights [8, 4] and [24, 4]
    with torch.no_grad():
        small.weight.zero_()  # 100% of its 4x1 blocks
        big.weight[:12] = 0   # 50%
    overall, per = overall_sparsity({"s": small, "b": big}, "4x1")
    assert per == {"s": 1.0, "b": 0.5} and overall == (1.0 * 32 + 0.5 * 96) / 128
