"""I-BERT: RoBERTa's graph and module names while quant_mode is off (its Quant* modules then compute in float, as
RoBERTa does); the integer-only mode (quant_mode=True) is another graph and is refused. Its IntLayerNorm spells
LayerNorm out (mean, variance, sqrt), so the exporter fuses it back into LayerNormalization; its Linears are
QuantLinear modules (F.linear in float mode), which FastTrainer prunes like nn.Linear. hf-fast quantizes the model
itself, like any other family."""
from hf_fast.models.roberta import FAMILY as _ROBERTA

FAMILY = _ROBERTA.derive("ibert", "I-BERT", config_requirements={"quant_mode": False}, onnx_fusions=("layernorm",),
                         linear_classes=("QuantLinear",))
