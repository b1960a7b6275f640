"""XLM-RoBERTa (and the multilingual embedding models built on it): transformers builds it from RoBERTa's modular
code (modular_xlm_roberta.py subclasses the Roberta classes), so RoBERTa's graph, module names and heads; a 250k
SentencePiece vocabulary, pad id 1 (positions from 2), one token type (a buffered zero row)."""
from hf_fast.models.roberta import FAMILY as _ROBERTA

FAMILY = _ROBERTA.derive("xlm-roberta", "XLM-RoBERTa")
