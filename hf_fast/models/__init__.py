"""One module per model family: what hf-fast needs to know about an architecture (README.md: adding a family).

    from hf_fast.models import registry
    fam = registry.get(config.model_type)       # ValueError naming the supported types otherwise
    fam.inputs, fam.engine.position, fam.heads["text-classification"].ops
"""
from hf_fast.models.registry import families, find, get, supported
from hf_fast.models.spec import EngineLayer, Family, HeadLayout

__all__ = ["Family", "EngineLayer", "HeadLayout", "families", "find", "get", "supported"]
