"""ELECTRA (the discriminator): BERT's post-LN layer and module names, absolute positions, token types as a graph
input; embedding tables of embedding_size columns, projected to hidden_size by `electra.embeddings_project` (an fp32
Linear after the embeddings LayerNorm) when the two differ; a GELU classification head instead of BERT's pooler."""
from hf_fast.models.bert import FAMILY as _BERT
from hf_fast.models.spec import EngineLayer, Family, HeadLayout

FAMILY = Family(
    model_type="electra",
    description="ELECTRA",
    inputs=_BERT.inputs,
    config_names=_BERT.config_names,
    prunable_linears=_BERT.prunable_linears,  # electra.encoder.layer.<i>.<BERT's Linear names>
    linear_roles=_BERT.linear_roles,
    onnx_layer=_BERT.onnx_layer,
    layer=_BERT.layer,  # BERT's post-LN layer (models/patterns.py); the projection sits before the layers
    heads={
        # ElectraClassificationHead: [CLS] -> dense -> GELU (erf) -> out_proj
        "text-classification": HeadLayout(("classifier.dense", "classifier.out_proj"),
                                          ("cls", "linear", "gelu", "linear")),
        "question-answering": HeadLayout(("qa_outputs",), ("linear",)),
        "token-classification": HeadLayout(("classifier",), ("linear",)),
    },
    engine=EngineLayer(norm="post", linear_bias=True, activation="gelu", position="absolute", token_types=True,
                       embeddings_project=True),
)
