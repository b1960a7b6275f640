"""BERT (and MiniLM: its checkpoints are BertModel, model_type "bert"): post-LN encoder, absolute positions,
token types as a graph input."""
from hf_fast.models.patterns import POST_LN
from hf_fast.models.spec import EngineLayer, Family, HeadLayout

FAMILY = Family(
    model_type="bert",
    description="BERT / MiniLM",
    inputs=("input_ids", "attention_mask", "token_type_ids"),
    config_names={"num_layers": ("num_hidden_layers",), "hidden_size": ("hidden_size",),
                  "num_heads": ("num_attention_heads",), "intermediate_size": ("intermediate_size",)},
    prunable_linears=(r"(?:^|\.)encoder\.layer\.(\d+)\.(attention\.self\.(?:query|key|value)|attention\.output\.dense"
                      r"|intermediate\.dense|output\.dense)$"),
    linear_roles={"attention.self.query": "q", "attention.self.key": "k", "attention.self.value": "v",
                  "attention.output.dense": "attn_out", "intermediate.dense": "ffn_in", "output.dense": "ffn_out"},
    onnx_layer=r"/encoder/layer\.\d+/",
    heads={
        # BertPooler (dense + tanh on [CLS]) then the classifier
        "text-classification": HeadLayout(("bert.pooler.dense", "classifier"), ("cls", "linear", "tanh", "linear")),
        "question-answering": HeadLayout(("qa_outputs",), ("linear",)),
        "token-classification": HeadLayout(("classifier",), ("linear",)),
    },
    engine=EngineLayer(norm="post", linear_bias=True, activation="gelu", position="absolute", token_types=True),
    layer=POST_LN,
)
