"""Length-grouped batches in random order, for the student build's long, uneven prompts (retail).

transformers' `group_by_length` sorts each mega-batch of 50 batches by length, longest first, so for 50 steps in a
row the batches run from the longest examples to the shortest. In a dialogue the length is the turn, so the model
sees the late turns of every conversation, then the early ones: a 50-step sawtooth in the loss. Shuffling the order
of the batches keeps each batch's padding (the same batches) and drops that correlation.
"""

from __future__ import annotations

import torch
from transformers.trainer_pt_utils import LengthGroupedSampler
from trl import SFTTrainer


class ShuffledLengthGroupedSampler(LengthGroupedSampler):
    """transformers' length-grouped order, cut into its batches, the batches in a random order (the same torch
    generator, so a seeded run, and a run resumed from a checkpoint with its RNG state, repeat their order)."""

    def __iter__(self):
        order = list(super().__iter__())
        batches = [order[i:i + self.batch_size] for i in range(0, len(order), self.batch_size)]
        shuffled = torch.randperm(len(batches), generator=self.generator).tolist()
        return iter([i for b in shuffled for i in batches[b]])


class ShuffledLengthGroupsSFTTrainer(SFTTrainer):
    """SFTTrainer whose length-grouped sampler (`train_sampling_strategy="group_by_length"`) shuffles its batches."""

    def _get_train_sampler(self, train_dataset=None):
        sampler = super()._get_train_sampler(train_dataset)
        if isinstance(sampler, LengthGroupedSampler):
            return ShuffledLengthGroupedSampler(sampler.batch_size, lengths=sampler.lengths, generator=sampler.generator)
        return sampler
