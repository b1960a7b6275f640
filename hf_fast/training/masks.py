"""Which Linear layers are pruned, block scores, and score -> block mask thresholding.

A block mask of a weight W[out, in] with block (r, c) is a bool tensor [out/r, in/c] (True = kept);
``hf_fast.blocks.expand_block_mask`` turns it into the element mask.
"""
from __future__ import annotations

import math
import re
from collections.abc import Iterable, Sequence

import torch
from torch import nn

from hf_fast.blocks import check_divides, expand_block_mask, parse_block
from hf_fast.models import generic, registry


def _patterns(model: nn.Module) -> dict[str, str]:
    """model_type -> module-path regex of the prunable encoder Linears: the model's own family's (registry), or every
    family's for a model type the registry does not know (a custom wrapper around a supported encoder)."""
    fam = registry.find(getattr(getattr(model, "config", None), "model_type", None))
    return {fam.model_type: fam.prunable_linears} if fam is not None else registry.prunable_patterns()


def find_prunable_linears(model: nn.Module, include: Sequence[str] = (), exclude: Sequence[str] = ()
                          ) -> dict[str, nn.Linear]:
    """Module path -> nn.Linear for the encoder's Q, K, V, attention output, FFN in/out (+ ``include``): the
    registry family's Linears, or for a model type it does not know every nn.Linear in the layer stacks of the base
    model's encoder (models/generic.py: DeBERTa-v2's query_proj ... output.dense, ALBERT's shared layer).

    Raises ValueError naming the searched patterns when the model has none of them.
    """
    found: dict[str, nn.Linear] = {}
    inc = [re.compile(p) for p in include]
    exc = [re.compile(p) for p in exclude]
    if registry.find(getattr(getattr(model, "config", None), "model_type", None)) is None:
        # a model type the registry does not know (DeBERTa-v2, ALBERT): the generic rule, the same Linears the
        # exporter quantizes for it (hf_fast/models/generic.py)
        stack = generic.encoder_linears(model)
        if stack:
            for name, mod in model.named_modules():
                if isinstance(mod, nn.Linear) and (name in stack or any(p.search(name) for p in inc)) \
                        and not any(p.search(name) for p in exc):
                    found[name] = mod
            if not any(n in stack for n in found):
                raise ValueError(f"exclude={list(exclude)} leaves none of the {len(stack)} encoder Linear layers of "
                                 f"{type(model).__name__} to prune")
            return found
    families = _patterns(model)
    # a family may compute its Linears with its own module class (registry Family.linear_classes)
    classes = {c for t in families for c in registry.get(t).linear_classes}
    pats = [re.compile(p) for p in families.values()]
    for name, mod in model.named_modules():
        if not isinstance(mod, nn.Linear) and type(mod).__name__ not in classes:
            continue
        if any(p.search(name) for p in pats) or any(p.search(name) for p in inc):
            if not any(p.search(name) for p in exc):
                found[name] = mod
    if not any(any(p.search(n) for p in pats) for n in found):
        searched = "; ".join(f"{fam}: {p}" for fam, p in families.items())
        supported = ", ".join(f.description for f in registry.families().values())
        raise ValueError(f"no encoder Linear layers found in {type(model).__name__} (searched module paths: "
                         f"{searched}; and nn.Linear layers in the layer stacks of base_model.encoder for other "
                         f"encoders). Supported: {supported}; pass include=[regex] for another architecture")
    return found


def check_blocks_divide(layers: dict[str, nn.Linear], block) -> None:
    """ValueError unless ``block`` tiles every weight, and a fused Linear's (models/generic.py FUSED_OUTPUTS:
    ModernBERT's Wqkv, Wi) without a block straddling two of its parts (q / k / v, GELU input / gate)."""
    r = parse_block(block)[0]
    for name, mod in layers.items():
        check_divides(tuple(mod.weight.shape), block, name=f"{name}.weight")
        parts = generic.fused_parts(name)
        n = mod.weight.shape[0]
        if parts and (n % len(parts) or (n // len(parts)) % r):
            raise ValueError(f"block {block} straddles the {' / '.join(parts)} split of {name}.weight: its {n} output "
                             f"rows stack {len(parts)} parts of {n // len(parts)}, which {r}-row blocks do not divide")


def block_l2(w: torch.Tensor, block) -> torch.Tensor:
    """[out/r, in/c] L2 norm of each block."""
    r, c = parse_block(block)
    b = w.detach().float().reshape(w.shape[0] // r, r, w.shape[1] // c, c)
    return b.pow(2).sum(dim=(1, 3)).sqrt()


def block_sum(x: torch.Tensor, block) -> torch.Tensor:
    r, c = parse_block(block)
    return x.detach().float().reshape(x.shape[0] // r, r, x.shape[1] // c, c).sum(dim=(1, 3))


def _prune_lowest(scores: torch.Tensor, k: int) -> torch.Tensor:
    """Bool keep-mask (flat) that drops the k lowest scores; ties broken by position (deterministic)."""
    keep = torch.ones(scores.numel(), dtype=torch.bool)
    if k > 0:
        order = torch.sort(scores.flatten().double(), stable=True).indices
        keep[order[:k]] = False
    return keep


def threshold_masks(scores: dict[str, torch.Tensor], sparsity: float, scope: str = "layer",
                    previous: dict[str, torch.Tensor] | None = None,
                    min_layer_sparsity: float | None = None,
                    max_layer_sparsity: float | None = None) -> dict[str, torch.Tensor]:
    """Block scores -> block masks pruning ``round(sparsity * n_blocks)`` blocks (per layer or globally).

    Blocks pruned in ``previous`` stay pruned (their score is treated as -inf), so masks only shrink.
    ``min_layer_sparsity`` (global scope): every layer first loses its lowest-scoring
    ``ceil(min_layer_sparsity * n)`` blocks (never under the floor: a floor at the engine's sparse/dense crossover
    must leave the layer on the sparse kernel); the rest of the global budget then goes by score.
    ``max_layer_sparsity`` (global scope): every layer keeps its highest-scoring ``n - floor(max_layer_sparsity * n)``
    blocks whatever the other layers' scores.
    """
    if not (0.0 <= sparsity < 1.0):
        raise ValueError(f"sparsity must lie in [0, 1), got {sparsity}")
    sc = {}
    for n, s in scores.items():
        s = s.detach().double().cpu().clone()
        if previous is not None and n in previous:
            s[~previous[n].cpu()] = float("-inf")
        sc[n] = s
    if scope == "layer":
        out = {}
        for n, s in sc.items():
            k = int(round(sparsity * s.numel()))
            out[n] = _prune_lowest(s, k).reshape(s.shape)
        return out
    if scope != "global":
        raise ValueError(f"scope must be 'layer' or 'global', got {scope!r}")
    names = list(sc)
    if min_layer_sparsity:
        if not (0.0 <= min_layer_sparsity <= sparsity):
            raise ValueError(f"min_layer_sparsity must lie in [0, sparsity={sparsity}], got {min_layer_sparsity}")
        for n in names:  # the floor's blocks go first: -inf sorts before every real score
            k = math.ceil(min_layer_sparsity * sc[n].numel() - 1e-9)  # round() fell 1 block under 60% of 36,864
            floor = _prune_lowest(sc[n], k).reshape(sc[n].shape)
            sc[n][~floor] = float("-inf")
    if max_layer_sparsity is not None and max_layer_sparsity < 1.0:
        if not (sparsity <= max_layer_sparsity <= 1.0) or (min_layer_sparsity or 0.0) > max_layer_sparsity:
            raise ValueError(f"max_layer_sparsity must lie in [max(sparsity, min_layer_sparsity), 1], got "
                             f"{max_layer_sparsity} (sparsity {sparsity}, floor {min_layer_sparsity})")
        for n in names:  # the cap's blocks stay: +inf sorts after every real score
            keep = sc[n].numel() - math.floor(max_layer_sparsity * sc[n].numel() + 1e-9)  # never over the cap
            if keep > 0:
                flat_n = sc[n].view(-1)
                top = torch.topk(flat_n, keep).indices
                flat_n[top[torch.isfinite(flat_n[top])]] = float("inf")  # never revive a block pruned before
    flat = torch.cat([sc[n].flatten() for n in names])
    keep = _prune_lowest(flat, int(round(sparsity * flat.numel())))
    out, i = {}, 0
    for n in names:
        m = sc[n].numel()
        out[n] = keep[i:i + m].reshape(sc[n].shape)
        i += m
    return out


def element_mask(block_mask: torch.Tensor, block, like: torch.Tensor) -> torch.Tensor:
    return expand_block_mask(block_mask, block).to(device=like.device, dtype=like.dtype)


def prune_by_magnitude(model: nn.Module, sparsity: float, block="4x1") -> dict[str, torch.Tensor]:
    """Zero the lowest-L2 blocks of every prunable Linear of ``model`` in place, ``sparsity`` of each (one shot, no
    training): the uniformly pruned models benchmarks time (latency does not depend on the values). Returns the
    block masks."""
    layers = find_prunable_linears(model)
    if sparsity <= 0:
        return {}
    masks = threshold_masks({n: block_l2(lin.weight, block) for n, lin in layers.items()}, sparsity)
    with torch.no_grad():
        for n, lin in layers.items():
            lin.weight.mul_(element_mask(masks[n], block, lin.weight))
    return masks


def mask_sparsity(masks: dict[str, torch.Tensor]) -> float:
    total = sum(m.numel() for m in masks.values())
    pruned = sum(int((~m).sum()) for m in masks.values())
    return pruned / total if total else 0.0


def layer_label(name: str) -> str:
    """Short per-layer label for logs: 'bert.encoder.layer.3.attention.self.query' -> 'layer.3.attention.self.query'."""
    m = re.search(r"layer\.\d+\..*$", name)
    return m.group(0) if m else name


def iter_masked(layers: dict[str, nn.Linear],
                masks: dict[str, torch.Tensor]) -> Iterable[tuple[str, nn.Linear, torch.Tensor]]:
    for n, mod in layers.items():
        if n in masks:
            yield n, mod, masks[n]
