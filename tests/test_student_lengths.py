"""The offline student's build refuses examples longer than its context instead of letting the trainer cut them
(the cut part is the action being taught)."""

import pytest

from teachable.training.student.build import check_lengths, train_tokenizer


def test_an_example_longer_than_the_context_is_an_error_naming_the_param():
    texts = ["go forward", "turn left", "pick up the red ball"] * 20
    tokenizer = train_tokenizer(texts, 300)
    short = {"prompt": "go forward", "completion": "turn left"}
    long = {"prompt": " ".join(["pick up the red ball"] * 200), "completion": "go forward"}
    assert check_lengths(tokenizer, [short] * 5, 128) <= 128
    with pytest.raises(ValueError, match="student.max_length=128"):
        check_lengths(tokenizer, [short, long], 128)
