"""The pretraining sampler: W ranks take what one process takes, in the same steps; resuming continues it."""

from __future__ import annotations

from torch.utils.data import DataLoader

from minigpt.data.text import ResumableSampler


def _batches(start: int, end: int, replicas: int, rank: int, batch: int) -> list[list[int]]:
    loader = DataLoader(range(end), batch_size=batch, sampler=ResumableSampler(start, end, replicas, rank))
    return [b.tolist() for b in loader]


def test_two_ranks_together_take_the_single_process_batches_in_the_same_steps():
    single = _batches(0, 24, 1, 0, batch=4)
    rank0, rank1 = _batches(0, 24, 2, 0, batch=2), _batches(0, 24, 2, 1, batch=2)
    assert len(rank0) == len(rank1) == len(single) == 6
    for step, want in enumerate(single):
        assert sorted(rank0[step] + rank1[step]) == want


def test_a_resumed_sampler_continues_and_keeps_the_whole_epoch_length():
    full = _batches(0, 24, 2, 1, batch=2)
    resumed = ResumableSampler(8, 24, num_replicas=2, rank=1)  # after 2 steps of 2 ranks × 2 samples
    assert len(resumed) == 12  # the epoch's share: Lightning counts the batches it already saw against it
    assert _batches(8, 24, 2, 1, batch=2) == full[2:]
