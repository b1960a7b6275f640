"""MPNet (all-mpnet-base-v2 and its fine-tunes): BERT's post-LN layer under other module names, RoBERTa's
padding-offset positions (padding_idx 1), no token types, and a learned relative-position bias on the attention
scores: a [buckets, heads] table (encoder.relative_attention_bias) indexed by T5's bucketing of key - query
(num_buckets 32, max_distance 128, as MPNetEncoder.compute_position_bias hard-codes them), shared by every layer and
added to the scaled scores before the key mask."""
from hf_fast.models.patterns import MPNET_LAYER
from hf_fast.models.spec import EngineLayer, Family, HeadLayout

FAMILY = Family(
    model_type="mpnet",
    description="MPNet",
    inputs=("input_ids", "attention_mask"),
    config_names={"num_layers": ("num_hidden_layers",), "hidden_size": ("hidden_size",),
                  "num_heads": ("num_attention_heads",), "intermediate_size": ("intermediate_size",)},
    prunable_linears=(r"(?:^|\.)encoder\.layer\.(\d+)\.(attention\.attn\.(?:q|k|v|o)|intermediate\.dense"
                      r"|output\.dense)$"),
    linear_roles={"attention.attn.q": "q", "attention.attn.k": "k", "attention.attn.v": "v",
                  "attention.attn.o": "attn_out", "intermediate.dense": "ffn_in", "output.dense": "ffn_out"},
    onnx_layer=r"/encoder/layer\.\d+/",
    heads={
        # MPNetClassificationHead: <s> token -> dense -> tanh -> out_proj (no pooler)
        "text-classification": HeadLayout(("classifier.dense", "classifier.out_proj"),
                                          ("cls", "linear", "tanh", "linear")),
        "question-answering": HeadLayout(("qa_outputs",), ("linear",)),
        "token-classification": HeadLayout(("classifier",), ("linear",)),
    },
    engine=EngineLayer(norm="post", linear_bias=True, activation="gelu", position="padding-offset",
                       token_types=False, attention_bias="relative", relative_buckets=32,
                       relative_max_distance=128),
    layer=MPNET_LAYER,
)
