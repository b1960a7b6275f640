"""Find, from the installed transformers' own code, every model type whose encoder computes BERT's or RoBERTa's graph.

"BERT's graph" (issue 18 item 8): post-LN layers, absolute or padding-offset (RoBERTa) positions, optional token
types, no extra inputs. Decided by running the code, not by reading names:

1. candidates: every model type with a sequence-classification, question-answering or token-classification head
   (hf-fast exports only those tasks);
2. layout: the base model of a tiny config of the type, built on the meta device, must hold exactly BertModel's
   parameters (same shapes, pooler aside), under BERT's names or in BERT's order; a type with more parameters
   (layoutlm's bbox tables, ELECTRA's embeddings projection, ...) or other shapes is not BERT's graph;
3. function: BERT's random weights, scaled so attention is peaked and positions matter, are loaded into the type
   and into BertModel and RobertaModel of the same config; the type matches the one whose last_hidden_state it
   reproduces (max relative difference 1e-4) on right-padded inputs with mixed token types. A pre-LN look-alike
   (roberta-prelayernorm, megatron-bert) has the layout but not the function. A type without a token-type table
   (DistilBERT) is compared with BERT whose type row is zero.

Types whose default config is not what their published checkpoints run are built with the published flags
(PUBLISHED: DeBERTa-v2's relative attention). A type that cannot be built tiny is listed with the error.

For each match it records the position rule, whether the type has token types and, per task, the transformers
class and its head's Linear modules. Run (about 20 s on one core):

    python tools/find_bert_like.py --out tools/bert_like.json

The recorded output (tools/bert_like.json) is what tests/test_models_registry.py holds the registry to (it reruns the
finder on the registered families and the look-alikes) and what tests/test_families.py parametrises over.
"""
from __future__ import annotations

import argparse
import inspect
import json
import os
import sys
import warnings

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

TASK_TABLES = {
    "text-classification": "MODEL_FOR_SEQUENCE_CLASSIFICATION_MAPPING_NAMES",
    "question-answering": "MODEL_FOR_QUESTION_ANSWERING_MAPPING_NAMES",
    "token-classification": "MODEL_FOR_TOKEN_CLASSIFICATION_MAPPING_NAMES",
}
# the tiny shape every candidate is built with (attributes a config lacks are skipped)
# (embedding_size keeps its default: ELECTRA's 128 != hidden needs the embeddings projection, not BERT's graph;
# block_size 2: BigBird's block-sparse attention then runs on SEQ tokens instead of falling back to full attention)
TINY = {"hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 4, "intermediate_size": 64,
        "hidden_dim": 64, "vocab_size": 99, "max_position_embeddings": 40, "block_size": 2, "num_random_blocks": 1}
# Where transformers' default config is not the architecture of the published checkpoints, the published
# architecture flags (a type is judged by what its checkpoints run): DeBERTa-v2's default config has no relative
# attention (it is then BERT without token types), every microsoft/deberta-v2 and -v3 checkpoint has it.
PUBLISHED = {
    "deberta-v2": {"relative_attention": True, "position_biased_input": False, "pos_att_type": ["p2c", "c2p"],
                   "max_relative_positions": -1, "position_buckets": 256, "norm_rel_ebd": "layer_norm",
                   "share_att_key": True},
}
FFN_NAMES = ("intermediate_size", "hidden_dim")  # DistilBERT calls the FFN size hidden_dim
TOKEN_TYPE_TABLE = "embeddings.token_type_embeddings.weight"
SEQ = 24
REL_TOL = 1e-4


def _tiny_config(model_type: str):
    from transformers import CONFIG_MAPPING

    cfg = CONFIG_MAPPING[model_type](**PUBLISHED.get(model_type, {}))
    for k, v in TINY.items():
        if hasattr(cfg, k):
            setattr(cfg, k, v)
    # special token ids must stay inside the tiny vocabulary
    ids = [getattr(cfg, k, None) for k in ("pad_token_id", "bos_token_id", "eos_token_id", "sep_token_id",
                                           "cls_token_id", "mask_token_id")]
    ids = [i for i in ids if isinstance(i, int)]
    if hasattr(cfg, "vocab_size") and ids:
        cfg.vocab_size = max(cfg.vocab_size, max(ids) + 1)
    cfg._attn_implementation = "eager"
    return cfg


def _reference_config(cfg, kind: str):
    """BertConfig / RobertaConfig with the candidate's sizes, activation, epsilon, token types and padding id."""
    import transformers

    cls = transformers.BertConfig if kind == "bert" else transformers.RobertaConfig
    pad = getattr(cfg, "pad_token_id", None)
    ffn = next((getattr(cfg, k) for k in FFN_NAMES if getattr(cfg, k, None) is not None), None)
    if ffn is None:
        raise AttributeError(f"{type(cfg).__name__} has none of {FFN_NAMES}")
    return cls(vocab_size=cfg.vocab_size, hidden_size=cfg.hidden_size, num_hidden_layers=cfg.num_hidden_layers,
               num_attention_heads=cfg.num_attention_heads, intermediate_size=ffn,
               hidden_act=getattr(cfg, "hidden_act", "gelu"), max_position_embeddings=cfg.max_position_embeddings,
               type_vocab_size=getattr(cfg, "type_vocab_size", 2) or 1,
               layer_norm_eps=getattr(cfg, "layer_norm_eps", 1e-12), pad_token_id=0 if pad is None else pad,
               hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0, attn_implementation="eager")


def _params(model) -> list[tuple[str, tuple[int, ...]]]:
    return [(n, tuple(p.shape)) for n, p in model.named_parameters() if not n.startswith("pooler.")]


def _layout(model_type: str):
    """(config, candidate -> BERT parameter name map) or (None, why not)."""
    import torch
    import transformers

    try:
        cfg = _tiny_config(model_type)
        with torch.device("meta"):
            cand = transformers.AutoModel.from_config(cfg)
    except Exception as e:  # a config that cannot be built tiny is reported, not guessed
        return None, f"cannot build a tiny base model: {type(e).__name__}: {str(e).splitlines()[0][:120]}"
    try:
        with torch.device("meta"):
            ref = transformers.BertModel(_reference_config(cfg, "bert"), add_pooling_layer=False)
    except Exception as e:
        return None, f"config has no BERT sizes: {type(e).__name__}: {str(e).splitlines()[0][:120]}"
    got, want = _params(cand), _params(ref)
    if len(got) == len(want) - 1:  # optional token types: a type without the table (DistilBERT)
        want = [(n, s) for n, s in want if n != TOKEN_TYPE_TABLE]
    if len(got) != len(want):
        extra = sorted({n for n, _ in got} - {n for n, _ in want})[:4]
        return None, f"{len(got)} parameters vs BERT's {len(want)}" + (f" (e.g. {', '.join(extra)})" if extra else "")
    want_d = dict(want)
    if all(want_d.get(n) == s for n, s in got):
        return cfg, {n: n for n, _ in got}
    if all(s == ws for (_, s), (_, ws) in zip(got, want, strict=True)):
        return cfg, {n: wn for (n, _), (wn, _) in zip(got, want, strict=True)}
    return None, "parameter shapes differ from BERT's"


def _inputs(cfg, seed: int = 0):
    import torch

    g = torch.Generator().manual_seed(seed)
    pad = getattr(cfg, "pad_token_id", None)
    pad = 0 if pad is None else int(pad)
    ids = torch.randint(max(pad, 4) + 1, cfg.vocab_size, (3, SEQ), generator=g)
    mask = torch.ones_like(ids)
    mask[1, SEQ - 6:] = 0
    mask[2, SEQ - 2:] = 0
    ids[mask == 0] = pad
    tt = torch.zeros_like(ids)
    if (getattr(cfg, "type_vocab_size", 0) or 0) > 1:
        tt[:, SEQ // 2:] = 1
    return ids, mask, tt


def _function(model_type: str, cfg, names: dict[str, str]) -> tuple[str | None, dict[str, float]]:
    """'bert' or 'roberta' when the candidate computes that reference's last_hidden_state, else None; the relative
    differences measured against each."""
    import torch
    import transformers

    torch.manual_seed(0)
    ref = {k: cls(_reference_config(cfg, k), add_pooling_layer=False).eval()
           for k, cls in (("bert", transformers.BertModel), ("roberta", transformers.RobertaModel))}
    with torch.no_grad():
        for n, p in ref["bert"].named_parameters():
            if n.endswith("bias") or "LayerNorm" in n:
                p.normal_(0.0 if n.endswith("bias") else 1.0, 0.2)
            else:  # peaked attention: q/k scores ~ O(10); positions far apart in the embedding sum
                p.normal_(0.0, 0.6 if ("query" in n or "key" in n or "embeddings" in n) else 0.2)
        if TOKEN_TYPE_TABLE not in names.values():  # no token types: BERT's type-0 row adds nothing
            ref["bert"].embeddings.token_type_embeddings.weight.zero_()
        ref["roberta"].load_state_dict(ref["bert"].state_dict(), strict=False)
        cand = transformers.AutoModel.from_config(cfg).eval()
        src = dict(ref["bert"].named_parameters())
        for n, p in cand.named_parameters():
            if n in names:
                p.copy_(src[names[n]])
        ids, mask, tt = _inputs(cfg)
        kw = {"input_ids": ids, "attention_mask": mask}
        takes_types = "token_type_ids" in inspect.signature(cand.forward).parameters
        if TOKEN_TYPE_TABLE in names.values() and takes_types and (getattr(cfg, "type_vocab_size", 0) or 0) > 1:
            kw["token_type_ids"] = tt
        out = cand(**kw).last_hidden_state
        valid = mask.bool()
        rel = {}
        for k, m in ref.items():
            r = m(**kw).last_hidden_state
            rel[k] = float(((out - r)[valid].abs().max() / r[valid].abs().max()).item())
    best = min(rel, key=rel.get)
    return (best if rel[best] <= REL_TOL else None), rel


def _heads(model_type: str, cfg) -> dict[str, dict[str, object]]:
    """Per task: the transformers class and its head's Linear modules (outside the base model, or its pooler)."""
    import torch
    import transformers
    from transformers.models.auto import modeling_auto

    out = {}
    for task, table in TASK_TABLES.items():
        cls_name = getattr(modeling_auto, table).get(model_type)
        if cls_name is None:
            continue
        with torch.device("meta"):
            m = getattr(transformers, cls_name)(cfg)
        base = f"{m.base_model_prefix}."  # the encoder's Linears are under it; BERT's pooler is part of the head
        linears = [n for n, mod in m.named_modules() if isinstance(mod, torch.nn.Linear)
                   and (not n.startswith(base) or n.startswith(f"{base}pooler"))]
        out[task] = {"class": cls_name, "head_linears": linears}
    return out


def candidates() -> list[str]:
    """Every model type with a sequence-classification, question-answering or token-classification class."""
    from transformers.models.auto import modeling_auto

    return sorted({t for table in TASK_TABLES.values() for t in getattr(modeling_auto, table)})


def find(model_types: list[str] | None = None) -> dict[str, object]:
    """{"transformers": version, "tolerance": REL_TOL, "model_types": {type: result}} for ``model_types``
    (default: every candidate)."""
    import transformers

    result: dict[str, dict[str, object]] = {}
    for mt in candidates() if model_types is None else model_types:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            cfg, names = _layout(mt)
            if cfg is None:
                result[mt] = {"match": None, "why": names}
                continue
            try:
                kind, rel = _function(mt, cfg, names)
            except Exception as e:
                result[mt] = {"match": None, "why": f"forward failed: {type(e).__name__}: {str(e)[:120]}"}
                continue
            if kind is None:
                result[mt] = {"match": None, "why": "BERT's parameters, another function (relative difference "
                              + ", ".join(f"{k} {v:.1e}" for k, v in rel.items()) + ")"}
                continue
            result[mt] = {
                "match": kind,
                "position": "absolute" if kind == "bert" else "padding-offset",
                "token_types": TOKEN_TYPE_TABLE in names.values(),
                "relative_difference": float(f"{rel[kind]:.1e}"),
                "heads": _heads(mt, cfg),
            }
    return {"transformers": transformers.__version__, "tolerance": REL_TOL, "model_types": result}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", help="write the JSON here (default: stdout)")
    args = ap.parse_args(argv)
    res = find()
    text = json.dumps(res, indent=1, sort_keys=True) + "\n"
    if args.out:
        with open(args.out, "w", encoding="utf-8") as f:
            f.write(text)
    else:
        sys.stdout.write(text)
    found = {k: v["match"] for k, v in res["model_types"].items() if v["match"]}
    print(f"{len(found)} of {len(res['model_types'])} candidates have BERT's or RoBERTa's graph: {found}",
          file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
