"""Length-grouped batches for the student build's long, uneven prompts (retail, the shop), drawn so
that a resumed build repeats them, and optionally in random order.

transformers' `LengthGroupedSampler` draws each epoch's order from the global RNG when the epoch
starts. A build resumed mid-epoch restores that RNG only afterwards (at the checkpoint's state), so
it trains the rest of the epoch on another order than the uninterrupted build: another model. Here
the order comes from (seed, epoch), as accelerate's seedable sampler does for random batches.

transformers also sorts each mega-batch of 50 batches by length, longest first, so for 50 steps in a
row the batches run from the longest examples to the shortest. In a dialogue the length is the turn,
so the model sees the late turns of every conversation, then the early ones: a 50-step sawtooth in
the loss. `shuffle_batches` keeps the same batches (the same padding) in a random order, which drops
that correlation.
"""

from __future__ import annotations

import torch
from transformers.trainer_pt_utils import LengthGroupedSampler, get_length_grouped_indices
from trl import SFTTrainer


class SeededLengthGroupedSampler(LengthGroupedSampler):
    """transformers' length-grouped order for the epoch set by `set_epoch`, from a generator seeded
    with seed + epoch; with `shuffle_batches`, that order cut into its batches and the batches
    shuffled by the same generator."""

    def __init__(
        self, batch_size: int, lengths: list[int], seed: int, shuffle_batches: bool = False
    ):
        super().__init__(batch_size, lengths=lengths)
        self.seed, self.shuffle_batches, self.epoch = seed, shuffle_batches, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __iter__(self):
        generator = torch.Generator().manual_seed(self.seed + self.epoch)
        order = get_length_grouped_indices(self.lengths, self.batch_size, generator=generator)
        if not self.shuffle_batches:
            return iter(order)
        batches = [order[i : i + self.batch_size] for i in range(0, len(order), self.batch_size)]
        shuffled = torch.randperm(len(batches), generator=generator).tolist()
        return iter([i for b in shuffled for i in batches[b]])


class LengthGroupsSFTTrainer(SFTTrainer):
    """SFTTrainer whose length-grouped sampler (`train_sampling_strategy="group_by_length"`) is
    seeded per epoch and, with `shuffle_length_groups`, shuffles its batches."""

    def __init__(self, *args, shuffle_length_groups: bool = False, **kwargs):
        self.shuffle_length_groups = shuffle_length_groups
        super().__init__(*args, **kwargs)

    def _get_train_sampler(self, train_dataset=None):
        sampler = super()._get_train_sampler(train_dataset)
        if isinstance(sampler, LengthGroupedSampler):
            seed = self.args.data_seed if self.args.data_seed is not None else self.args.seed
            return SeededLengthGroupedSampler(
                sampler.batch_size, sampler.lengths, seed, self.shuffle_length_groups
            )
        return sampler
