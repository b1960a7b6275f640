"""Data2Vec-Text: transformers builds it from RoBERTa's modular code (modular_data2vec_text.py), so RoBERTa's graph,
module names and heads (the text model of data2vec; only its training objective differs)."""
from hf_fast.models.roberta import FAMILY as _ROBERTA

FAMILY = _ROBERTA.derive("data2vec-text", "Data2Vec-Text")
