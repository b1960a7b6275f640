"""DistillationLoss against hand-computed values, for classification, QA and token classification, and
FastTrainer with a frozen teacher of another architecture."""
import math

import pytest
import torch
from test_training_helpers import ToyDataset, tiny_bert, tiny_distilbert, train_args
from transformers.modeling_outputs import QuestionAnsweringModelOutput, SequenceClassifierOutput, TokenClassifierOutput

from hf_fast.training import DistillationLoss, DistillConfig, FastConfig, FastTrainer


def _softmax(xs):
    e = [math.exp(x) for x in xs]
    return [v / sum(e) for v in e]


def _kl(t_logits, s_logits, T):
    p = _softmax([x / T for x in t_logits])
    q = _softmax([x / T for x in s_logits])
    return sum(pi * math.log(pi / qi) for pi, qi in zip(p, q, strict=False))


def test_classification_value_by_hand():
    s = torch.tensor([[1.0, 2.0, 0.5], [0.0, -1.0, 3.0]])
    t = torch.tensor([[3.0, 1.0, 0.0], [0.5, 0.5, 0.5]])
    hard = torch.tensor(0.7)
    T, alpha = 2.0, 0.9
    loss, parts = DistillationLoss(DistillConfig(temperature=T, alpha=alpha))(
        SequenceClassifierOutput(loss=hard, logits=s), SequenceClassifierOutput(logits=t))
    kd = (_kl(t[0].tolist(), s[0].tolist(), T) + _kl(t[1].tolist(), s[1].tolist(), T)) / 2 * T * T
    assert parts["kd"].item() == pytest.approx(kd, rel=1e-5)
    assert loss.item() == pytest.approx(alpha * kd + (1 - alpha) * 0.7, rel=1e-5)
    # numbers written out once, so a change of convention (no T^2, sum over batch) is caught
    assert kd == pytest.approx(1.239475, abs=1e-5)  # numpy: (p*log(p/q)).sum(1).mean()*T*T


def test_identical_logits_give_only_the_hard_loss():
    s = torch.randn(4, 3)
    loss, _ = DistillationLoss(DistillConfig(alpha=0.25))(
        {"loss": torch.tensor(2.0), "logits": s}, {"logits": s.clone()})
    assert loss.item() == pytest.approx(0.75 * 2.0, abs=1e-6)


def test_qa_averages_start_and_end():
    g = torch.Generator().manual_seed(0)
    ss, se, ts, te = (torch.randn(2, 7, generator=g) for _ in range(4))
    T = 3.0
    loss, parts = DistillationLoss(DistillConfig(temperature=T, alpha=1.0))(
        QuestionAnsweringModelOutput(start_logits=ss, end_logits=se),
        QuestionAnsweringModelOutput(start_logits=ts, end_logits=te))
    ref = sum(_kl(t[i].tolist(), s[i].tolist(), T) for s, t in ((ss, ts), (se, te)) for i in range(2)) / 4 * T * T
    assert loss.item() == pytest.approx(ref, rel=1e-5)


def test_token_classification_skips_ignored_tokens():
    g = torch.Generator().manual_seed(1)
    s, t = torch.randn(2, 4, 5, generator=g), torch.randn(2, 4, 5, generator=g)
    labels = torch.tensor([[1, -100, 2, 0], [-100, -100, 3, 4]])
    T = 2.0
    loss, _ = DistillationLoss(DistillConfig(temperature=T, alpha=1.0))(
        TokenClassifierOutput(logits=s), TokenClassifierOutput(logits=t), {"labels": labels})
    valid = [(b, i) for b in range(2) for i in range(4) if labels[b, i] != -100]
    ref = sum(_kl(t[b, i].tolist(), s[b, i].tolist(), T) for b, i in valid) / len(valid) * T * T
    assert loss.item() == pytest.approx(ref, rel=1e-5)


def test_head_shape_mismatch_is_a_clear_error():
    with pytest.raises(ValueError, match="heads do not match"):
        DistillationLoss()({"logits": torch.zeros(2, 3)}, {"logits": torch.zeros(2, 4)})
    with pytest.raises(ValueError, match="heads do not match"):
        DistillationLoss()({"logits": torch.zeros(2, 3)}, {"start_logits": torch.zeros(2, 4),
                                                          "end_logits": torch.zeros(2, 4)})


@pytest.mark.parametrize("task", ["seq", "qa", "tok"])
def test_real_model_outputs_all_tasks(task):
    n = 2 if task == "qa" else 3
    student, teacher = tiny_distilbert(task, num_labels=n), tiny_bert(task, num_labels=n, hidden=64)
    ids = torch.randint(1, 100, (2, 10))
    kw = {"seq": {"labels": torch.tensor([0, 2])}, "tok": {"labels": torch.randint(0, 3, (2, 10))},
          "qa": {"start_positions": torch.tensor([1, 2]), "end_positions": torch.tensor([3, 4])}}[task]
    so = student(input_ids=ids, **kw)
    with torch.no_grad():
        to = teacher(input_ids=ids)
    loss, parts = DistillationLoss()(so, to, {"input_ids": ids, **kw})
    assert loss.dim() == 0 and torch.isfinite(loss) and "hard" in parts
    loss.backward()
    assert student.distilbert.embeddings.word_embeddings.weight.grad is not None


def test_hidden_and_attention_mse():
    student = tiny_bert(layers=2, attn_implementation="eager")
    teacher = tiny_bert(layers=4, seed=5, attn_implementation="eager")
    from hf_fast.training.distillation import check_teacher_compatible

    cfg = DistillConfig(alpha=1.0, hidden_weight=2.0, attention_weight=3.0)
    lmap = check_teacher_compatible(student, teacher, cfg)
    assert lmap == {0: 1, 1: 3}
    ids = torch.randint(1, 100, (2, 8))
    so = student(input_ids=ids, output_hidden_states=True, output_attentions=True)
    to = teacher(input_ids=ids, output_hidden_states=True, output_attentions=True)
    loss, parts = DistillationLoss(cfg, lmap)(so, to)
    h = (torch.mean((so.hidden_states[1] - to.hidden_states[2]) ** 2)
         + torch.mean((so.hidden_states[2] - to.hidden_states[4]) ** 2)) / 2
    a = (torch.mean((so.attentions[0] - to.attentions[1]) ** 2)
         + torch.mean((so.attentions[1] - to.attentions[3]) ** 2)) / 2
    assert parts["hidden"].item() == pytest.approx(h.item(), rel=1e-5)
    assert parts["attention"].item() == pytest.approx(a.item(), rel=1e-5)
    assert loss.item() == pytest.approx(parts["kd"].item() + 2 * h.item() + 3 * a.item(), rel=1e-5)


@pytest.mark.parametrize("weights", [[1.0, 3.0], {"1": 3.0}])
def test_layer_weights_give_a_weighted_mean_over_layers(weights):
    student = tiny_bert(layers=2, attn_implementation="eager")
    teacher = tiny_bert(layers=4, seed=5, attn_implementation="eager")
    from hf_fast.training.distillation import check_teacher_compatible

    cfg = DistillConfig(alpha=1.0, hidden_weight=2.0, attention_weight=3.0, layer_weights=weights)
    assert cfg.layer_weights in ({0: 1.0, 1: 3.0}, {1: 3.0})  # a list or JSON's string keys, normalised
    lmap = check_teacher_compatible(student, teacher, cfg)
    ids = torch.randint(1, 100, (2, 8))
    so = student(input_ids=ids, output_hidden_states=True, output_attentions=True)
    to = teacher(input_ids=ids, output_hidden_states=True, output_attentions=True)
    loss, parts = DistillationLoss(cfg, lmap)(so, to)
    h0, h1 = (torch.mean((so.hidden_states[1] - to.hidden_states[2]) ** 2).item(),
              torch.mean((so.hidden_states[2] - to.hidden_states[4]) ** 2).item())
    a0, a1 = (torch.mean((so.attentions[0] - to.attentions[1]) ** 2).item(),
              torch.mean((so.attentions[1] - to.attentions[3]) ** 2).item())
    assert parts["hidden"].item() == pytest.approx((h0 + 3 * h1) / 4, rel=1e-5)
    assert parts["attention"].item() == pytest.approx((a0 + 3 * a1) / 4, rel=1e-5)
    # the layers' terms differ by more than the tolerance above, so an unweighted mean would fail it
    assert abs(h1 - h0) / 4 > 5e-5 * h0 and abs(a1 - a0) / 4 > 5e-5 * a0


def test_layer_weight_zero_leaves_the_layer_out():
    student = tiny_bert(layers=2)
    teacher = tiny_bert(layers=4, seed=5)
    cfg = DistillConfig(alpha=1.0, hidden_weight=1.0, layer_weights=[0, 1])
    ids = torch.randint(1, 100, (2, 8))
    so, to = student(input_ids=ids, output_hidden_states=True), teacher(input_ids=ids, output_hidden_states=True)
    _, parts = DistillationLoss(cfg, {0: 1, 1: 3})(so, to)
    assert parts["hidden"].item() == pytest.approx(
        torch.mean((so.hidden_states[2] - to.hidden_states[4]) ** 2).item(), rel=1e-5)


@pytest.mark.parametrize("weights, match", [
    ([-1.0, 1.0], "numbers >= 0"), ([0, 0], "all 0"), ("deep", "a list"), ({"a": 1}, "a list"),
    ([True, 1.0], "numbers >= 0"), ([1.0, float("nan")], "numbers >= 0")])
def test_layer_weights_bad_values_are_clear_errors(weights, match):
    with pytest.raises(ValueError, match=match):
        DistillConfig(hidden_weight=1.0, layer_weights=weights)


def test_layer_weights_checked_against_the_student():
    from hf_fast.training.distillation import check_teacher_compatible

    student, teacher = tiny_bert(layers=2), tiny_bert(layers=4, seed=5)
    with pytest.raises(ValueError, match="student layers \\[2\\]"):
        check_teacher_compatible(student, teacher, DistillConfig(hidden_weight=1.0, layer_weights=[1, 1, 1]))
    with pytest.raises(ValueError, match="every mapped"):
        check_teacher_compatible(student, teacher, DistillConfig(hidden_weight=1.0, layer_map={0: 1},
                                                                 layer_weights={0: 0, 1: 1.0}))


def test_layer_weights_survive_the_json_round_trip():
    fc = FastConfig(sparsity=0.5, distill=DistillConfig(hidden_weight=1.0, layer_weights=[0.5, 2.0]))
    import json

    back = FastConfig.from_dict(json.loads(fc.to_json_string()))
    assert back.distill.layer_weights == {0: 0.5, 1: 2.0}


def test_fast_trainer_distils_from_frozen_teacher_of_another_architecture(tmp_path):
    student = tiny_distilbert()
    teacher = tiny_bert(hidden=64, layers=3, seed=9)
    teacher.train()
    before = {k: v.clone() for k, v in teacher.state_dict().items()}
    calls = []
    orig = teacher.forward

    def spy(*a, **kw):
        calls.append((teacher.training, torch.is_grad_enabled(), sorted(kw)))
        return orig(*a, **kw)

    teacher.forward = spy
    tr = FastTrainer(model=student, teacher=teacher, args=train_args(tmp_path, max_steps=6),
                     fast_config=FastConfig(sparsity=0.5, block="4x1", end_step=4, frequency=2,
                                            distill=DistillConfig(temperature=2.0, alpha=0.5)),
                     train_dataset=ToyDataset(32))
    tr.train()
    assert len(calls) == 6
    assert all(training is False and grad is False for training, grad, _ in calls)
    assert all("labels" not in keys for _, _, keys in calls)
    assert all(not p.requires_grad for p in teacher.parameters())
    assert all(torch.equal(before[k], v) for k, v in teacher.state_dict().items())
    log = [h for h in tr.state.log_history if "distill/kd" in h]
    assert log and log[-1]["distill/kd"] > 0
