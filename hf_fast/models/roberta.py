"""RoBERTa: BERT's layer and names; positions count real tokens from pad_token_id + 1 (the padding offset),
token types are a buffered all-zero row, not a graph input."""
from hf_fast.models.bert import FAMILY as _BERT
from hf_fast.models.spec import EngineLayer, Family, HeadLayout

FAMILY = Family(
    model_type="roberta",
    description="RoBERTa",
    inputs=("input_ids", "attention_mask"),
    config_names=_BERT.config_names,
    prunable_linears=_BERT.prunable_linears,
    linear_roles=_BERT.linear_roles,
    onnx_layer=_BERT.onnx_layer,
    heads={
        # RobertaClassificationHead: [CLS] -> dense -> tanh -> out_proj
        "text-classification": HeadLayout(("classifier.dense", "classifier.out_proj"),
                                          ("cls", "linear", "tanh", "linear")),
        "question-answering": HeadLayout(("qa_outputs",), ("linear",)),
        "token-classification": HeadLayout(("classifier",), ("linear",)),
    },
    engine=EngineLayer(norm="post", linear_bias=True, activation="gelu", position="padding-offset", token_types=True),
    layer=_BERT.layer,
)
