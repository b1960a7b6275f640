"""hf_fast.training.augment: perturbed copies for distillation, deterministic, training split only."""
import pytest

from hf_fast.training.augment import augment_split, check_augment


def test_copies_labels_and_determinism():
    split = {"text": ["a b c d e f g h", "x y", "z"], "label": [1, 0, 1]}
    out = augment_split(split, {"copies": 2, "seed": 3})
    assert out["text"][:3] == split["text"] and len(out["text"]) == 9
    assert out["label"] == [1, 0, 1] * 3
    for orig, copy in zip(split["text"] * 2, out["text"][3:], strict=False):
        assert copy and set(copy.split()) <= set(orig.split())  # only words of its own sentence
    assert out == augment_split(split, {"copies": 2, "seed": 3})
    assert out != augment_split(split, {"copies": 2, "seed": 4})
    assert augment_split(split, {"copies": 0}) == split


@pytest.mark.parametrize("spec, match", [({"copies": -1}, "copies"), ({"copies": 1.5}, "copies"),
                                         ({"word_dropout": 1.0}, "word_dropout"), ({"mlm": True}, "unknown keys")])
def test_bad_specs(spec, match):
    with pytest.raises(ValueError, match=match):
        check_augment(spec)
