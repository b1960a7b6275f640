"""ModernBERT (answerdotai/ModernBERT-base / -large and their fine-tunes): pre-LN layers without biases (layer 0 has no
attention LayerNorm), one fused Wqkv (rows q, k, v) with rotary q / k, GeGLU in the fused Wi (rows: the GELU input,
then the gate), sliding-window attention (|i - j| <= local_attention / 2) in every layer but each
global_attn_every_n_layers-th, whose rope theta differs (global_rope_theta / local_rope_theta), a final LayerNorm, and
task heads of dense -> GELU -> LayerNorm (head.*) before the classifier.

Pruning: the four Linears of each layer; Wqkv's and Wi's pruning blocks must never straddle their parts
(models/generic.FUSED_OUTPUTS, checked by training/masks.check_blocks_divide). The walker reads the window and the
theta of each layer from the exported graph (runtime/walker.py), so the engine runs what the graph computes. A graph it
does not read (hidden_activation other than the erf GELU, classifier_pooling="mean") still exports, and runs in ONNX
Runtime with the reason recorded (backend="auto")."""
from hf_fast.models.patterns import MODERNBERT_LAYER
from hf_fast.models.spec import EngineLayer, Family, HeadLayout

_HEAD = ("head.dense", "head.norm", "classifier")  # ModernBertPredictionHead, then the classifier

FAMILY = Family(
    model_type="modernbert",
    description="ModernBERT",
    inputs=("input_ids", "attention_mask"),
    config_names={"num_layers": ("num_hidden_layers",), "hidden_size": ("hidden_size",),
                  "num_heads": ("num_attention_heads",), "intermediate_size": ("intermediate_size",)},
    prunable_linears=r"(?:^|\.)layers\.(\d+)\.(attn\.Wqkv|attn\.Wo|mlp\.Wi|mlp\.Wo)$",
    linear_roles={"attn.Wqkv": "qkv", "attn.Wo": "attn_out", "mlp.Wi": "ffn_in", "mlp.Wo": "ffn_out"},
    onnx_layer=r"/layers\.\d+/(?:attn|mlp)/W",  # no longer read (spec.Family.onnx_layer)
    heads={
        # classifier_pooling="cls": token 0 -> head (dense, GELU, LayerNorm) -> classifier. "mean" pooling computes
        # another graph: the plan refuses its head by name and backend="auto" runs it in ONNX Runtime.
        "text-classification": HeadLayout(_HEAD, ("cls", "linear", "gelu", "layernorm", "linear")),
        "question-answering": HeadLayout(_HEAD, ("linear", "gelu", "layernorm", "linear")),
        "token-classification": HeadLayout(_HEAD, ("linear", "gelu", "layernorm", "linear")),
    },
    engine=EngineLayer(norm="pre", linear_bias=False, activation="geglu", position="rotary", token_types=False),
    layer=MODERNBERT_LAYER,
)
