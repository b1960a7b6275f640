"""CamemBERT: transformers builds it from RoBERTa's modular code (modular_camembert.py subclasses the Roberta
classes), so RoBERTa's graph, module names and heads with a French SentencePiece vocabulary."""
from hf_fast.models.roberta import FAMILY as _ROBERTA

FAMILY = _ROBERTA.derive("camembert", "CamemBERT")
