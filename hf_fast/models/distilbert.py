"""DistilBERT: BERT's layer under other names (n_layers/dim, q_lin/ffn.lin1), no token types, absolute positions."""
from hf_fast.models.patterns import POST_LN
from hf_fast.models.spec import EngineLayer, Family, HeadLayout

FAMILY = Family(
    model_type="distilbert",
    description="DistilBERT",
    inputs=("input_ids", "attention_mask"),
    config_names={"num_layers": ("n_layers",), "hidden_size": ("dim",), "num_heads": ("n_heads",),
                  "intermediate_size": ("hidden_dim",)},
    prunable_linears=r"(?:^|\.)transformer\.layer\.(\d+)\.(attention\.(?:q_lin|k_lin|v_lin|out_lin)|ffn\.(?:lin1|lin2))$",
    linear_roles={"attention.q_lin": "q", "attention.k_lin": "k", "attention.v_lin": "v",
                  "attention.out_lin": "attn_out", "ffn.lin1": "ffn_in", "ffn.lin2": "ffn_out"},
    onnx_layer=r"/transformer/layer\.\d+/",
    heads={
        # [CLS] -> pre_classifier -> ReLU -> classifier
        "text-classification": HeadLayout(("pre_classifier", "classifier"), ("cls", "linear", "relu", "linear")),
        "question-answering": HeadLayout(("qa_outputs",), ("linear",)),
        "token-classification": HeadLayout(("classifier",), ("linear",)),
    },
    engine=EngineLayer(norm="post", linear_bias=True, activation="gelu", position="absolute", token_types=False),
    layer=POST_LN,
)
