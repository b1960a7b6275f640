"""FastConfig / DistillConfig: what FastTrainer does, as plain dataclasses that round-trip to JSON and YAML.

Every field has a default, so ``FastConfig()`` is the best recipe this project measured (benchmarks/RESULTS.md,
rt-polarity, session 4: 0.2 points below the dense teacher at 80% sparsity): 80% sparsity in the block the native
kernels of this CPU run fastest (``block="auto"``), a gradual cubic schedule over the first 70% of the steps,
first-order scores compared across all encoder Linears (``score="movement"``, ``scope="global"``) with a per-layer
floor of 0.75 x the target (``min_layer_sparsity="auto"``: 60% at 80%), distillation at T=2, alpha=0.9 when a
teacher is given. Validation happens in ``__post_init__``, so a bad value fails when the config is built, long
before any training step.
"""
from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hf_fast._atomic import write_text
from hf_fast.blocks import FAST_BLOCKS, KERNEL_BLOCKS, block_name, parse_block

StepLike = int | float

SCHEDULES = ("cubic", "oneshot")
SCORES = ("magnitude", "movement")
SCORE_ALIASES = {"first_order": "movement", "first-order": "movement", "l2": "magnitude"}
SCOPES = ("layer", "global", "latency")
QUANTIZATION = (None, "qat")
# distill.loss: "kl" on the logits of a task head, or a label-free loss on the pooled, L2-normalised sentence
# embeddings of a feature-extraction model (AutoModel), as sentence-transformers' distillation recipe does
DISTILL_LOSSES = ("kl", "embedding-mse", "embedding-cosine", "embedding-mse+cosine")
EMBEDDING_LOSSES = DISTILL_LOSSES[1:]
# min_layer_sparsity="auto": the floor is this share of the target. The measured best run used a 60% floor at 80%
# (benchmarks/RESULTS.md, session 4); the same share leaves the global scores a quarter of every layer's budget to
# move between layers at any target, and never asks more of a layer than the target itself.
AUTO_FLOOR_SHARE = 0.75


def _check_step(name: str, v: StepLike | None, allow_none: bool = False) -> None:
    if v is None:
        if allow_none:
            return
        raise ValueError(f"{name} must be set")
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise ValueError(f"{name} must be an int (optimizer step) or a float in [0, 1] (fraction of "
                         f"max_steps), got {v!r}")
    if isinstance(v, float) and not (0.0 <= v <= 1.0):
        raise ValueError(f"{name}={v!r}: a float step is a fraction of max_steps and must lie in [0, 1]; "
                         "pass an int for an absolute step")
    if v < 0:
        raise ValueError(f"{name} must be >= 0, got {v!r}")


def resolve_step(v: StepLike, max_steps: int) -> int:
    """An int is an optimizer step; a float in [0, 1] is a fraction of ``max_steps``."""
    if isinstance(v, float):
        return int(round(v * max_steps))
    return int(v)


def _from_dict(cls, d: dict[str, Any]):
    if not isinstance(d, dict):
        raise ValueError(f"{cls.__name__} expects a mapping, got {type(d).__name__}")
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(d) - names)
    if unknown:
        raise ValueError(f"unknown {cls.__name__} option(s) {unknown}; known options: {sorted(names)}")
    return cls(**d)


@dataclass
class DistillConfig:
    """Knowledge distillation settings (used only when FastTrainer gets a ``teacher``).

    Args:
        loss: ``"kl"`` (default): KL on the temperature-softened logits of a task head. For a feature-extraction
            model (``AutoModel``, a sentence-transformers encoder) a label-free loss on the pooled, L2-normalised
            sentence embeddings of student and teacher: ``"embedding-mse"`` (mean squared error over the
            embedding dimensions, sentence-transformers' ``MSELoss``), ``"embedding-cosine"`` (mean of
            ``1 - cos``) or ``"embedding-mse+cosine"`` (their sum).
        pooling: embedding losses only: ``"mean"``, ``"cls"``, ``"max"`` or ``"mean_sqrt_len"``; ``None``
            (default) = what the teacher's own sentence-transformers folder says (``modules.json`` ->
            ``1_Pooling/config.json``), else sentence-transformers' default, mean.
        temperature: softening temperature T of both logit sets; the KL term is scaled by T**2.
        alpha: weight of the distillation (KL) term; the hard-label loss gets ``1 - alpha``.
        hidden_weight: weight of the MSE between mapped hidden states (0 disables it). Needs equal
            hidden sizes of teacher and student.
        attention_weight: weight of the MSE between mapped attention probabilities (0 disables it). Needs
            equal head counts and eager attention (``attn_implementation="eager"``) on both models.
        layer_map: ``{student_layer: teacher_layer}`` (0-based encoder layers) for the two MSE terms;
            ``None`` maps student layer i to teacher layer ``(i + 1) * Lt // Ls - 1`` (uniform).
        layer_weights: per-student-layer weights of the two MSE terms (layer-wise distillation): a list indexed
            by student layer or a ``{student_layer: weight}`` mapping (unlisted layers weigh 1). The terms become
            weighted means over the mapped layers, so ``hidden_weight`` keeps its scale; a weight of 0 leaves that
            layer out. ``None`` (default) weighs every mapped layer alike.
        relation_weight: embedding losses only: weight of a label-free ranking term (0 disables it). Each
            student embedding scores a set of anchors -- the teacher's embeddings of the batch's other texts and of
            the last ``RELATION_ANCHORS`` texts before them -- and the softmax of those scores at
            ``relation_temperature`` learns the teacher's own (KL). Retrieval ranks by such scores; the MSE /
            cosine terms only pull each embedding towards its target.
        relation_temperature: the temperature of that softmax (cosine scores; 0.05 is a usual contrastive one).
    """

    temperature: float = 2.0
    alpha: float = 0.9
    hidden_weight: float = 0.0
    attention_weight: float = 0.0
    layer_map: dict[int, int] | None = None
    layer_weights: list[float] | dict[int, float] | None = None
    loss: str = "kl"
    pooling: str | None = None
    relation_weight: float = 0.0
    relation_temperature: float = 0.05

    @property
    def embedding_loss(self) -> bool:
        """True for the label-free sentence-embedding losses (a feature-extraction student and teacher)."""
        return self.loss in EMBEDDING_LOSSES

    def __post_init__(self):
        if self.loss not in DISTILL_LOSSES:
            raise ValueError(f"distill.loss must be one of {DISTILL_LOSSES} ('kl' for a task head's logits, "
                             f"'embedding-*' for sentence embeddings), got {self.loss!r}")
        if self.pooling is not None:
            from hf_fast.pooling import POOLING_MODES

            if self.pooling not in POOLING_MODES:
                raise ValueError(f"distill.pooling must be None (the teacher's own sentence-transformers config) "
                                 f"or one of {POOLING_MODES}, got {self.pooling!r}")
            if not self.embedding_loss:
                raise ValueError(f"distill.pooling applies to the embedding losses {EMBEDDING_LOSSES}, not "
                                 f"loss={self.loss!r}")
        if not isinstance(self.temperature, (int, float)) or self.temperature <= 0:
            raise ValueError(f"distill.temperature must be > 0, got {self.temperature!r}")
        if not isinstance(self.alpha, (int, float)) or not (0.0 <= self.alpha <= 1.0):
            raise ValueError(f"distill.alpha must lie in [0, 1], got {self.alpha!r}")
        for n in ("hidden_weight", "attention_weight", "relation_weight"):
            v = getattr(self, n)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or v < 0:
                raise ValueError(f"distill.{n} must be >= 0, got {v!r}")
        if self.relation_weight and not self.embedding_loss:
            raise ValueError(f"distill.relation_weight ranks sentence embeddings: it applies to the embedding "
                             f"losses {EMBEDDING_LOSSES}, not loss={self.loss!r}")
        t = self.relation_temperature
        if isinstance(t, bool) or not isinstance(t, (int, float)) or t <= 0:
            raise ValueError(f"distill.relation_temperature must be > 0, got {t!r}")
        if self.layer_map is not None:
            if not isinstance(self.layer_map, dict):
                raise ValueError(f"distill.layer_map must be a mapping student_layer -> teacher_layer, "
                                 f"got {self.layer_map!r}")
            try:  # JSON keys are strings
                self.layer_map = {int(k): int(v) for k, v in self.layer_map.items()}
            except (TypeError, ValueError):
                raise ValueError(f"distill.layer_map must map ints to ints, got {self.layer_map!r}") from None
        if self.layer_weights is not None:
            lw = self.layer_weights
            try:  # JSON/YAML give a list or string keys
                lw = dict(enumerate(lw)) if isinstance(lw, (list, tuple)) else {int(k): v for k, v in lw.items()}
            except (AttributeError, TypeError, ValueError):
                raise ValueError(f"distill.layer_weights must be a list (one weight per student layer) or a "
                                 f"mapping student_layer -> weight, got {self.layer_weights!r}") from None
            bad = {k: v for k, v in lw.items() if isinstance(v, bool) or not isinstance(v, (int, float))
                   or not v >= 0 or k < 0}
            if bad:
                raise ValueError(f"distill.layer_weights must be numbers >= 0 on layers >= 0, got {bad}")
            if not any(v > 0 for v in lw.values()):
                raise ValueError(f"distill.layer_weights are all 0 ({self.layer_weights!r}); set hidden_weight=0 "
                                 f"and attention_weight=0 to turn the layer terms off")
            self.layer_weights = {k: float(v) for k, v in lw.items()}

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> DistillConfig:
        return _from_dict(cls, d)


@dataclass
class FastConfig:
    """Block pruning (+ distillation, + optional QAT) settings of FastTrainer.

    Args:
        sparsity: final fraction of pruned (all-zero) blocks in the encoder Linear layers, in [0, 1).
        block: block shape ``"RxC"`` of the weight as stored, [out, in]: ``"4x1"`` or ``"1x4"`` (the shapes the
            native kernels run), ``"4x4"`` (coarser tiles that run on the 4x1 kernel, faster on AVX-512 VNNI, at
            some accuracy: benchmarks/RESULTS.md), a ``(rows, cols)`` pair, or ``"auto"``: the one of 4x1 / 1x4 the
            native kernels of this CPU run fastest (``hf_fast.native.preferred_block()``); the resolved shape is
            recorded.
        allow_any_block: accept any other shape (``"4x16"``, ``"32x32"``, ...) for research; the engine then
            finds no native kernel for it and skips only the 4x1/1x4 blocks that happen to be all zero.
        schedule: ``"cubic"`` (gradual, Zhu & Gupta 2017) or ``"oneshot"`` (final sparsity at start_step).
        score: ``"magnitude"`` (block L2 norm) or ``"movement"`` (first-order |w * grad| summed over the
            block, accumulated between pruning steps; alias ``"first_order"``).
        scope: ``"layer"`` (every layer reaches ``sparsity``), ``"global"`` (one threshold over all) or
            ``"latency"``: each layer's sparsity is chosen so that the engine's predicted latency at
            ``target_shape`` meets ``target_speedup`` or ``target_latency_ms``, pruning hardest the Linears that
            save the most engine time per point of score lost (hf_fast/training/latency.py). The prediction comes
            from the engine's measured cost curves in ``cost_file`` (``hf-fast profile`` on the deployment CPU);
            ``sparsity`` and ``initial_sparsity`` are not used (the reached sparsity is recorded).
        min_layer_sparsity: with ``scope="global"``, the least sparsity every layer reaches (scaled along the
            schedule). A global allocation can leave a layer below the native engine's sparse/dense crossover
            (~60% on VNNI), where it runs the dense kernel; a floor there keeps every layer on the sparse
            kernels. ``"auto"`` (default) = ``0.75 * sparsity`` with global scope (0.6 at 0.8, the measured best),
            no floor with ``scope="layer"``; ``None`` = no floor.
        max_layer_sparsity: with ``scope="global"``, the most sparsity any layer reaches (the mirror of the floor,
            scaled along the schedule the same way); ``None`` (default) = no cap. On SQuAD the global threshold
            emptied the top layers (99.6-99.9% in layer 5 of MiniLM-L6 at 80%), the ones the span head reads.
        initial_sparsity: sparsity of the cubic schedule at ``start_step``.
        start_step, end_step: the pruning window; an int is an optimizer step, a float in [0, 1] a
            fraction of ``max_steps``. After ``end_step`` the masks are fixed (fine-tuning).
        frequency: optimizer steps between mask updates; ``None`` = about 20 updates over the window.
        include: extra module-name regexes to prune too (e.g. ``"classifier"``); dense by default.
        exclude: module-name regexes to keep dense among the encoder Linear layers.
        distill: a DistillConfig (or dict); used when FastTrainer gets a teacher.
        quantization: ``None`` or ``"qat"`` (fake-quant fine-tuning matching the int8 exporter).
        qat_start_step: when QAT starts (int step / float fraction); ``None`` = at ``end_step``.
        target_speedup: ``scope="latency"``: the engine latency to reach as a speedup over the dense model
            (> 1; the dense latency is the cost file's). Exactly one of it and ``target_latency_ms``.
        target_latency_ms: ``scope="latency"``: the engine latency to reach, in milliseconds per forward pass
            of ``target_shape``.
        target_shape: ``(batch, seq)`` the latency is for; ``None`` = the cost file's (``(1, 128)`` without one).
        cost_file: a cost file written by ``hf-fast profile`` on the CPU the model will be deployed to. ``None``:
            a quick probe of the training host, with a warning (its curves are this machine's). Along the
            schedule the latency target ramps from the dense latency to the final one as the sparsity does.
    """

    sparsity: float = 0.8
    block: str | tuple[int, int] = "auto"
    schedule: str = "cubic"
    score: str = "movement"
    scope: str = "global"
    min_layer_sparsity: float | str | None = "auto"
    max_layer_sparsity: float | None = None
    initial_sparsity: float = 0.0
    start_step: StepLike = 0
    end_step: StepLike = 0.7
    frequency: int | None = None
    include: list[str] = field(default_factory=list)
    exclude: list[str] = field(default_factory=list)
    distill: DistillConfig = field(default_factory=DistillConfig)
    quantization: str | None = None
    qat_start_step: StepLike | None = None
    allow_any_block: bool = False
    target_speedup: float | None = None
    target_latency_ms: float | None = None
    target_shape: tuple[int, int] | None = None
    cost_file: str | None = None

    def __post_init__(self):
        for n in ("sparsity", "initial_sparsity"):
            v = getattr(self, n)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not (0.0 <= v < 1.0):
                raise ValueError(f"{n} must lie in [0, 1) (the fraction of pruned blocks), got {v!r}")
        if self.initial_sparsity > self.sparsity:
            raise ValueError(f"initial_sparsity={self.initial_sparsity} exceeds sparsity={self.sparsity}")
        if isinstance(self.block, list):
            self.block = tuple(self.block)
        if not isinstance(self.allow_any_block, bool):
            raise ValueError(f"allow_any_block must be True or False, got {self.allow_any_block!r}")
        if self.block != "auto":
            name = block_name(self.block)  # raises ValueError on unknown names
            if name not in FAST_BLOCKS and not self.allow_any_block:
                raise ValueError(f"block {name!r} has no native kernel, so a model pruned with it is not fast: use "
                                 f"one of {', '.join(FAST_BLOCKS)} or 'auto' (the faster of 4x1 / 1x4 on this CPU); "
                                 "pass "
                                 "allow_any_block=True to train another shape for research")
        if self.schedule not in SCHEDULES:
            raise ValueError(f"schedule must be one of {SCHEDULES}, got {self.schedule!r}")
        self.score = SCORE_ALIASES.get(self.score, self.score)
        if self.score not in SCORES:
            raise ValueError(f"score must be one of {SCORES} (or {sorted(SCORE_ALIASES)}), got {self.score!r}")
        if self.scope not in SCOPES:
            raise ValueError(f"scope must be one of {SCOPES}, got {self.scope!r}")
        if self.min_layer_sparsity is not None and self.min_layer_sparsity != "auto":
            v = self.min_layer_sparsity
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not (0.0 <= v <= self.sparsity):
                raise ValueError(f"min_layer_sparsity must be 'auto', None or lie in [0, sparsity={self.sparsity}], "
                                 f"got {v!r}")
            if self.scope != "global":
                raise ValueError(f"min_layer_sparsity applies to scope='global' (with scope={self.scope!r} each "
                                 "layer's sparsity is set otherwise)")
        if self.max_layer_sparsity is not None:
            v = self.max_layer_sparsity
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not (self.sparsity <= v <= 1.0):
                raise ValueError(f"max_layer_sparsity must be None or lie in [sparsity={self.sparsity}, 1], got {v!r}")
            if self.scope != "global":
                raise ValueError(f"max_layer_sparsity applies to scope='global' (with scope={self.scope!r} each "
                                 "layer's sparsity is set otherwise)")
        _check_step("start_step", self.start_step)
        _check_step("end_step", self.end_step)
        _check_step("qat_start_step", self.qat_start_step, allow_none=True)
        if type(self.start_step) is type(self.end_step) and self.start_step > self.end_step:
            raise ValueError(f"start_step={self.start_step} is after end_step={self.end_step}")
        if self.frequency is not None and (isinstance(self.frequency, bool) or not isinstance(self.frequency, int)
                                           or self.frequency < 1):
            raise ValueError(f"frequency must be a positive int or None, got {self.frequency!r}")
        for n in ("include", "exclude"):
            v = getattr(self, n)
            if isinstance(v, str):
                setattr(self, n, [v])
            elif not isinstance(v, (list, tuple)) or not all(isinstance(s, str) for s in v):
                raise ValueError(f"{n} must be a list of module-name regexes, got {v!r}")
            else:
                setattr(self, n, list(v))
        if isinstance(self.distill, dict):
            self.distill = DistillConfig.from_dict(self.distill)
        elif self.distill is None:
            self.distill = DistillConfig()
        elif not isinstance(self.distill, DistillConfig):
            raise ValueError(f"distill must be a DistillConfig or a dict, got {type(self.distill).__name__}")
        if self.quantization not in QUANTIZATION:
            raise ValueError(f"quantization must be one of {QUANTIZATION}, got {self.quantization!r}")
        self._check_latency()

    def _check_latency(self) -> None:
        given = [n for n in ("target_speedup", "target_latency_ms", "target_shape", "cost_file")
                 if getattr(self, n) is not None]
        if self.scope != "latency":
            if given:
                raise ValueError(f"{', '.join(given)} appl{'y' if len(given) > 1 else 'ies'} to scope='latency' "
                                 f"(scope is {self.scope!r})")
            return
        targets = [n for n in ("target_speedup", "target_latency_ms") if getattr(self, n) is not None]
        if len(targets) != 1:
            raise ValueError("scope='latency' needs exactly one of target_speedup (e.g. 3.0: three times faster "
                             "than the dense model) and target_latency_ms (e.g. 5.0), got "
                             + (" and ".join(targets) if targets else "neither"))
        v = getattr(self, targets[0])
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v <= 0:
            raise ValueError(f"{targets[0]} must be a positive number, got {v!r}")
        if targets[0] == "target_speedup" and v <= 1.0:
            raise ValueError(f"target_speedup={v!r} must exceed 1 (the dense model already runs at speedup 1)")
        if self.target_shape is not None:
            ts = self.target_shape
            if (not isinstance(ts, (list, tuple)) or len(ts) != 2
                    or any(isinstance(x, bool) or not isinstance(x, int) or x < 1 for x in ts)):
                raise ValueError(f"target_shape must be (batch, seq) of positive ints, got {ts!r}")
            self.target_shape = (int(ts[0]), int(ts[1]))
        if self.cost_file is not None:
            if not isinstance(self.cost_file, (str, Path)):
                raise ValueError(f"cost_file must be a path, got {type(self.cost_file).__name__}")
            self.cost_file = str(self.cost_file)
            from hf_fast.cost_curves import CostCurves

            curves = CostCurves.load(self.cost_file)  # FileNotFoundError / CostFileError (a ValueError) name it
            if self.target_shape is not None and tuple(curves.target_shape) != self.target_shape:
                raise ValueError(f"target_shape={self.target_shape} but cost file {self.cost_file!r} was profiled "
                                 f"at (batch, seq) = {tuple(curves.target_shape)}: profile that shape with "
                                 "`hf-fast profile --batch B --seq S`")
        if self.min_layer_sparsity not in (None, "auto"):
            raise ValueError("min_layer_sparsity does not apply to scope='latency' (each layer's sparsity follows "
                             "the engine's cost curves)")
        if self.initial_sparsity:
            raise ValueError("initial_sparsity does not apply to scope='latency' (the latency target ramps from the "
                             "dense latency)")
        if self.include:
            raise ValueError("include= does not apply to scope='latency': only the encoder Linears the engine runs "
                             "have cost curves")
        if self.block != "auto" and block_name(self.block) not in KERNEL_BLOCKS:  # cost curves are per kernel block
            raise ValueError("scope='latency' needs a block the engine's sparse kernels run "
                             f"({', '.join(KERNEL_BLOCKS)}"
                             f" or 'auto'), got {block_name(self.block)!r}")

    def layer_floor(self) -> float | None:
        """The resolved ``min_layer_sparsity`` at the final target (``None``: no floor)."""
        if self.scope != "global":
            return None
        if self.min_layer_sparsity == "auto":
            return round(AUTO_FLOOR_SHARE * self.sparsity, 6)
        return self.min_layer_sparsity

    # -- serialisation -------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        for k in ("block", "target_shape"):
            if isinstance(d[k], tuple):
                d[k] = list(d[k])
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> FastConfig:
        return _from_dict(cls, dict(d))

    def to_json_string(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)

    def to_json(self, path: str | Path) -> None:
        write_text(path, self.to_json_string() + "\n")  # atomic: an existing config is replaced whole or kept

    @classmethod
    def from_json(cls, path: str | Path) -> FastConfig:
        return cls.from_dict(json.loads(Path(path).read_text()))

    def to_yaml(self, path: str | Path) -> None:
        import yaml

        write_text(path, yaml.safe_dump(self.to_dict(), sort_keys=False))

    @classmethod
    def from_yaml(cls, path: str | Path) -> FastConfig:
        import yaml

        d = yaml.safe_load(Path(path).read_text()) or {}
        if "fast_config" in d and isinstance(d["fast_config"], dict):  # a whole recipe file
            d = d["fast_config"]
        return cls.from_dict(d)

    @classmethod
    def load(cls, path: str | Path) -> FastConfig:
        """Read a ``.json`` or ``.yaml``/``.yml`` file."""
        p = str(path)
        return cls.from_yaml(p) if p.endswith((".yaml", ".yml")) else cls.from_json(p)

    def save(self, path: str | Path) -> None:
        p = str(path)
        self.to_yaml(p) if p.endswith((".yaml", ".yml")) else self.to_json(p)


def resolve_block(block: str | tuple[int, int]) -> str:
    """``"auto"`` -> the native runtime's preferred block on this CPU; anything else -> canonical ``"RxC"``."""
    if block == "auto":
        from hf_fast import native

        pref = getattr(native, "preferred_block", None)
        if pref is None:
            raise RuntimeError('block="auto" needs hf_fast.native.preferred_block(), which this build of hf-fast '
                               'does not provide yet; pass an explicit block such as "4x1" or "1x4"')
        block = pref()
    r, c = parse_block(block)
    return f"{r}x{c}"
