"""``fast_model.as_torch_module()``: a fast model as a ``torch.nn.Module``, for ``transformers.Trainer``.

    trainer = transformers.Trainer(model=fast_model.as_torch_module(), args=args, eval_dataset=ds,
                                   compute_metrics=...)
    trainer.evaluate()          # eval_loss from forward(labels=...), plus your metrics
    trainer.predict(test_ds)

The Trainer (and accelerate underneath it) takes only ``nn.Module`` models; this adaptor holds no parameters and
runs the fast model in ``forward``. Its forward names the task's inputs and targets (``labels``, or
``start_positions``/``end_positions``), since the Trainer reads the signature to keep dataset columns and to find
the label names. It is inference-only: ``train()`` raises. torch is imported when the first adaptor is built.
"""
from __future__ import annotations

import functools
from typing import Any


@functools.cache
def _classes() -> dict[str, type]:
    import torch

    class _Base(torch.nn.Module):
        def __init__(self, fast_model):
            super().__init__()
            object.__setattr__(self, "fast_model", fast_model)  # not a submodule: it is no nn.Module
            self.config = fast_model.config
            self.main_input_name = fast_model.main_input_name

        def train(self, mode: bool = True):
            if mode:
                raise ValueError("an hf-fast model is inference-only: use Trainer.evaluate / Trainer.predict, "
                                 "or train the transformers model and export it again")
            return super().train(False)

        def __repr__(self):
            return f"{type(self).__name__}({self.fast_model!r})"

    class FastModelForSequenceClassificationModule(_Base):
        def forward(self, input_ids=None, attention_mask=None, token_type_ids=None, labels=None,
                    return_dict: bool = True, **kwargs):
            return self.fast_model(input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids,
                                   labels=labels, return_dict=return_dict, **kwargs)

    class FastModelForTokenClassificationModule(FastModelForSequenceClassificationModule):
        pass

    class FastModelForQuestionAnsweringModule(_Base):
        def forward(self, input_ids=None, attention_mask=None, token_type_ids=None, start_positions=None,
                    end_positions=None, return_dict: bool = True, **kwargs):
            return self.fast_model(input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids,
                                   start_positions=start_positions, end_positions=end_positions,
                                   return_dict=return_dict, **kwargs)

    return {"text-classification": FastModelForSequenceClassificationModule,
            "token-classification": FastModelForTokenClassificationModule,
            "question-answering": FastModelForQuestionAnsweringModule}


def as_torch_module(fast_model: Any):
    """Wrap a FastModelFor* in the ``nn.Module`` of its task (see the module docstring)."""
    task = getattr(fast_model, "task", None) or fast_model.fast_config["task"]
    cls = _classes().get(task)
    if cls is None:
        raise ValueError(f"no torch adaptor for task {task!r}")
    module = cls(fast_model)
    module.train(False)  # evaluation mode, as Trainer.evaluate sets it
    return module
