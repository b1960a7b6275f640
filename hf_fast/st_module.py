"""A sentence-transformers input module that runs a FastSentenceTransformer (tokenizer + hf-fast engine, pooling and
normalisation included), so a ``SentenceTransformer`` built on it (``FastSentenceTransformer.to_sentence_transformer``)
serves ``encode``, ``similarity``, ``util.semantic_search`` & co. from the fast model. Imports sentence-transformers:
load it only through ``to_sentence_transformer``.
"""
from __future__ import annotations

from typing import Any

import numpy as np
import torch
from sentence_transformers import SentenceTransformer
from sentence_transformers.base.modules.input_module import InputModule


class FastEngineModule(InputModule):
    """preprocess: the fast model's tokenizer at its max_seq_length; forward: the engine's sentence embeddings."""

    config_keys: list[str] = []

    def __init__(self, fast):
        super().__init__()
        self.fast = fast
        self.tokenizer = fast.tokenizer
        self.max_seq_length = fast.max_seq_length

    def preprocess(self, inputs, prompt: str | None = None, **kwargs) -> dict[str, Any]:
        texts = [str(t) for t in inputs]
        if prompt:
            texts = self._prepend_prompt(texts, prompt)
        return {k: torch.from_numpy(v) for k, v in self.fast.tokenize(texts).items()}

    def forward(self, features: dict[str, Any], **kwargs) -> dict[str, Any]:
        feeds = {k: np.asarray(features[k].cpu().numpy(), np.int64) for k in self.fast.model.input_names
                 if k in features}
        emb = self.fast.model.run(**feeds)["sentence_embedding"]
        features["sentence_embedding"] = torch.from_numpy(np.ascontiguousarray(emb))
        return features

    def get_sentence_embedding_dimension(self) -> int:
        return self.fast.get_sentence_embedding_dimension()

    get_embedding_dimension = get_sentence_embedding_dimension

    def save(self, output_path: str, *args, **kwargs) -> None:
        raise NotImplementedError(NOT_SAVED)


NOT_SAVED = ("a SentenceTransformer over the hf-fast engine is not saved by sentence-transformers: the fast folder it "
             "was loaded from is the model (hf_fast.save_fast writes one; hf_fast.hub.push_fast_folder uploads it)")


class EngineSentenceTransformer(SentenceTransformer):
    """The SentenceTransformer ``FastSentenceTransformer.to_sentence_transformer`` returns: its saves refuse before
    writing anything (sentence-transformers' own ``save`` writes config_sentence_transformers.json before it asks
    the modules, which overwrote that file in the fast folder the model came from, then failed)."""

    def save(self, path: str, *args, **kwargs) -> None:
        raise NotImplementedError(NOT_SAVED)

    save_pretrained = save

    def push_to_hub(self, repo_id: str, *args, **kwargs):
        raise NotImplementedError(NOT_SAVED)
