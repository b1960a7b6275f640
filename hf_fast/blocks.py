"""Block shapes and block sparsity: the one vocabulary shared by training, export and runtime.

A block shape is "rows x columns" of a weight as PyTorch stores it, [out_features, in_features]:
"4x1" is 4 consecutive output channels x 1 input channel (the paper's VNNI block), "1x4" is one
output channel x 4 consecutive inputs. Works on numpy arrays and torch tensors alike.
"""
from __future__ import annotations

import re

import numpy as np

BlockLike = str | tuple[int, int]
NAMED_BLOCKS = ("4x1", "1x4", "4x4", "4x16", "32x32", "1x1")
# The shapes the native sparse kernels pack (hf_fast.native.BLOCK_SHAPES).
KERNEL_BLOCKS = ("4x1", "1x4")
# The shapes a model can be pruned in and run fast: the kernels' own, and 4x4 tiles, which run on the 4x1 kernel (on
# AVX-512 VNNI with each tile's 4 input channels read pre-interleaved: no unpack in the inner loop). Any other shape
# is exported as given, and the engine skips the 4x1/1x4 blocks that happen to be all zero inside it.
FAST_BLOCKS = ("4x1", "1x4", "4x4")
# Zero-block fractions this close count as equal when telling 4x4 tiles from 4x1 / 1x4 blocks: int8 rounding zeroes a
# few blocks inside kept tiles.
TILE_TOLERANCE = 0.005
_BLOCK_RE = re.compile(r"^\s*(\d+)\s*x\s*(\d+)\s*$")


def parse_block(block: BlockLike) -> tuple[int, int]:
    """"4x1" / (4, 1) -> (4, 1). "auto" must be resolved by the caller (see hf_fast.runtime)."""
    if isinstance(block, str):
        if block == "auto":
            raise ValueError('block="auto" must be resolved to a concrete shape before use')
        m = _BLOCK_RE.match(block)
        if not m:
            raise ValueError(f"unknown block shape {block!r}: use 'RxC' such as 4x1, 1x4, 4x16, 32x32, "
                             "a (rows, cols) tuple, or 'auto'")
        r, c = int(m.group(1)), int(m.group(2))
    elif isinstance(block, (tuple, list)) and len(block) == 2 and all(isinstance(v, (int, np.integer)) for v in block):
        r, c = int(block[0]), int(block[1])
    else:
        raise ValueError(f"block must be a 'RxC' string or a (rows, cols) tuple, got {block!r}")
    if r < 1 or c < 1:
        raise ValueError(f"block dimensions must be >= 1, got {r}x{c}")
    return r, c


def block_name(block: BlockLike) -> str:
    r, c = parse_block(block)
    return f"{r}x{c}"


def check_divides(shape: tuple[int, int], block: BlockLike, name: str = "weight") -> None:
    r, c = parse_block(block)
    if shape[0] % r or shape[1] % c:
        raise ValueError(f"block {r}x{c} does not divide {name} of shape [out={shape[0]}, in={shape[1]}]")


def _blocks(w, block):
    """View a 2-D weight as [out/r, r, in/c, c] (numpy or torch)."""
    r, c = parse_block(block)
    check_divides(tuple(w.shape), (r, c))
    return w.reshape(w.shape[0] // r, r, w.shape[1] // c, c)


def block_nonzero_mask(w, block: BlockLike) -> np.ndarray:
    """[out/r, in/c] bool numpy array: True where the block holds any non-zero weight."""
    b = _blocks(w, block)
    if hasattr(b, "detach"):  # torch
        return (b != 0).any(dim=3).any(dim=1).cpu().numpy()
    return (np.asarray(b) != 0).any(axis=(1, 3))


def block_sparsity(w, block: BlockLike) -> float:
    """Fraction of blocks that are entirely zero."""
    nz = block_nonzero_mask(w, block)
    return 1.0 - float(nz.mean())


def overall_sparsity(layers: dict, block: BlockLike) -> tuple[float, dict]:
    """Block sparsity of several Linears together, each counting by its size (a global allocation makes
    them differ), and the per-layer figures: ``{name: module with .weight}`` -> (overall, {name: sparsity})."""
    per = {n: block_sparsity(m.weight, block) for n, m in layers.items()}
    sizes = {n: m.weight.numel() for n, m in layers.items()}
    total = sum(sizes.values())
    return (float(sum(per[n] * sizes[n] for n in per) / total) if total else 0.0), per


def expand_block_mask(mask, block: BlockLike):
    """[out/r, in/c] block mask -> [out, in] element mask (numpy or torch, same type as input)."""
    r, c = parse_block(block)
    if hasattr(mask, "repeat_interleave"):
        return mask.repeat_interleave(r, dim=0).repeat_interleave(c, dim=1)
    return np.repeat(np.repeat(np.asarray(mask), r, axis=0), c, axis=1)
