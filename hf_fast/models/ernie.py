"""ERNIE (1.0 / 2.0 / 3.0, transformers' `ernie`): BERT's code (modular_ernie.py subclasses the Bert classes) under
the `ernie.` prefix. With use_task_id ERNIE 3.0 adds a task-type table to the embedding sum: another graph, refused."""
from hf_fast.models.bert import FAMILY as _BERT
from hf_fast.models.spec import HeadLayout

FAMILY = _BERT.derive(
    "ernie", "ERNIE",
    # ErniePooler under the model's own prefix, then the classifier
    heads={**_BERT.heads, "text-classification": HeadLayout(("ernie.pooler.dense", "classifier"),
                                                            ("cls", "linear", "tanh", "linear"))},
    config_requirements={"use_task_id": False},
)
