"""The offline student's build refuses examples longer than its context instead of letting the
trainer cut them (the cut part is the action being taught); its length-grouped batches come from
(seed, epoch) and can be shuffled."""

import pytest
import torch
from transformers.trainer_pt_utils import LengthGroupedSampler

from teachable.core.params import StudentParams
from teachable.training.student.batching import LengthGroupsSFTTrainer, SeededLengthGroupedSampler
from teachable.training.student.build import build_model, check_lengths, train_tokenizer


def test_an_example_longer_than_the_context_is_an_error_naming_the_param():
    texts = ["go forward", "turn left", "pick up the red ball"] * 20
    tokenizer = train_tokenizer(texts, 300)
    short = {"prompt": "go forward", "completion": "turn left"}
    long = {"prompt": " ".join(["pick up the red ball"] * 200), "completion": "go forward"}
    assert check_lengths(tokenizer, [short] * 5, 128) <= 128
    with pytest.raises(ValueError, match="student.max_length=128"):
        check_lengths(tokenizer, [short, long], 128)


def test_length_groups_come_from_seed_and_epoch_and_shuffle_keeping_each_batch():
    """At the retail build's size (thousands of examples, batch 32): epoch e's order is
    transformers' length grouping drawn from seed + e, whatever the global RNG did meanwhile (what a
    resumed build needs), another epoch gets another order; shuffled, the same batches, each still
    of similar length, in an order that no longer runs longest to shortest."""
    lengths = [
        int(x)
        for x in torch.randint(100, 1500, (9600,), generator=torch.Generator().manual_seed(0))
    ]

    def batches(order):
        order = list(order)
        return [tuple(order[i : i + 32]) for i in range(0, len(order), 32)]

    def seeded(seed, epoch, shuffle):
        sampler = SeededLengthGroupedSampler(32, lengths, seed, shuffle_batches=shuffle)
        sampler.set_epoch(epoch)
        # the global RNG moves on (as between an epoch's start and a resume): no effect
        torch.rand(100)
        return batches(sampler)

    grouped = batches(
        LengthGroupedSampler(32, lengths=lengths, generator=torch.Generator().manual_seed(3))
    )
    assert seeded(1, 2, False) == grouped != seeded(1, 1, False)
    assert seeded(3, 0, False) == grouped and seeded(1, 2, True) == seeded(1, 2, True) != seeded(
        1, 3, True
    )

    shuffled = seeded(1, 2, True)
    assert sorted(shuffled) == sorted(grouped) and len(shuffled) == 300

    def falls(order):  # how often a batch's longest example is no longer than the one before's
        tops = [max(lengths[i] for i in b) for b in order]
        return sum(b <= a for a, b in zip(tops, tops[1:])) / (len(tops) - 1)

    assert falls(grouped) > 0.9 and 0.35 < falls(shuffled) < 0.65
    spread = [max(lengths[i] for i in b) - min(lengths[i] for i in b) for b in shuffled]
    # still length-grouped: about 1400 / 50 apart within a mega-batch
    assert sum(spread) / len(spread) < 50


def test_the_student_trainer_hands_out_the_seeded_sampler(tmp_path):
    from datasets import Dataset
    from trl import SFTConfig

    dataset = Dataset.from_list(
        [{"prompt": "go " * n, "completion": "turn left"} for n in range(1, 65)]
    )
    tokenizer = train_tokenizer(["go forward", "turn left"] * 20, 300)
    config = SFTConfig(
        output_dir=str(tmp_path),
        per_device_train_batch_size=8,
        use_cpu=True,
        report_to=[],
        train_sampling_strategy="group_by_length",
        max_length=256,
    )
    model = build_model(
        StudentParams.defaults(
            hidden_size=16, num_layers=1, num_heads=2, intermediate_size=16, vocab_size=300
        ),
        tokenizer,
        seed=0,
    )
    for shuffle in (False, True):
        trainer = LengthGroupsSFTTrainer(
            model=model,
            args=config,
            train_dataset=dataset,
            processing_class=tokenizer,
            shuffle_length_groups=shuffle,
        )
        sampler = trainer._get_train_sampler()
        assert (
            isinstance(sampler, SeededLengthGroupedSampler) and sampler.shuffle_batches is shuffle
        )
        assert sampler.seed == config.seed and sampler.lengths == [
            len(x) for x in trainer.train_dataset["input_ids"]
        ]
