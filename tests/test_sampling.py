"""GlobalBatchSampler and SeededAugmentation: the same images in the same groups whatever the process layout."""

import pytest
import torch

from deeplab import get_config
from deeplab.config import REFERENCE_CONFIGS, TRAIN_IMAGES
from deeplab.engine.sampling import GlobalBatchSampler, SeededAugmentation
from deeplab.engine.train import TrainingError, accumulation_steps, micro_batch_size


def micro_batches(world_size: int, accumulation: int, batch: int, *, epoch: int = 0, start_step: int = 0):
    """Every process's micro-batches of one epoch, listed step by step in global order."""
    per_rank = []
    for rank in range(world_size):
        sampler = GlobalBatchSampler(
            50, batch_per_process=batch, accumulation=accumulation, rank=rank, world_size=world_size, seed=3
        )
        sampler.set_epoch(epoch, start_step)
        per_rank.append(list(sampler))
    steps = []
    for step in range(len(per_rank[0]) // accumulation):
        for micro in range(accumulation):
            steps.extend(per_rank[rank][step * accumulation + micro] for rank in range(world_size))
    return steps


def test_two_processes_see_the_groups_one_process_accumulates():
    assert micro_batches(world_size=2, accumulation=1, batch=2) == micro_batches(world_size=1, accumulation=2, batch=2)
    assert micro_batches(world_size=4, accumulation=2, batch=2) == micro_batches(world_size=1, accumulation=8, batch=2)


def test_an_epoch_covers_distinct_images_and_drops_the_last_partial_step():
    keys = [key for group in micro_batches(world_size=2, accumulation=2, batch=3) for key in group]
    indices = [index for _, index in keys]
    assert len(indices) == 48 and len(set(indices)) == 48  # 50 // 12 = 4 steps of 12
    assert {epoch for epoch, _ in keys} == {0}


def test_epochs_shuffle_differently_and_reproducibly():
    first, second = micro_batches(1, 1, 4, epoch=0), micro_batches(1, 1, 4, epoch=1)
    assert [i for _, i in first[0]] != [i for _, i in second[0]]
    assert micro_batches(1, 1, 4, epoch=1) == second


def test_resuming_skips_the_finished_steps():
    whole = micro_batches(world_size=2, accumulation=2, batch=2, epoch=5)
    resumed = micro_batches(world_size=2, accumulation=2, batch=2, epoch=5, start_step=3)
    assert resumed == whole[3 * 4 :]


def test_too_small_a_dataset_is_explained():
    with pytest.raises(ValueError, match="fewer than one global batch of 16"):
        GlobalBatchSampler(10, batch_per_process=2, accumulation=4, world_size=2)


class Noise:
    """A 'transform' that returns fresh random numbers."""

    def __call__(self, sample):
        return sample + torch.rand(3)


def test_augmentation_depends_on_epoch_and_index_only_and_spares_the_global_rng():
    dataset = SeededAugmentation([torch.zeros(3)] * 4, Noise(), seed=1)
    torch.manual_seed(0)
    before = torch.get_rng_state()
    first = dataset[(0, 2)]
    assert torch.equal(torch.get_rng_state(), before)
    torch.rand(100)  # whatever else happened in between
    torch.testing.assert_close(dataset[(0, 2)], first)
    assert not torch.equal(dataset[(1, 2)], first) and not torch.equal(dataset[(0, 3)], first)


@pytest.mark.parametrize(
    ("dataset", "per_gpu", "per_epoch", "total"),
    [("voc", 2, 661, 39_660), ("ade20k", 2, 1263, 164_190), ("cityscapes", 1, 372, 81_840)],
)
def test_eight_processes_run_the_reference_iterations_with_no_override(dataset, per_gpu, per_epoch, total):
    for name in [name for name in REFERENCE_CONFIGS if name.startswith(f"{dataset}-")]:
        config = get_config(name).train
        assert (micro_batch_size(config, 8), accumulation_steps(config, 8)) == (per_gpu, 1)
        sampler = GlobalBatchSampler(TRAIN_IMAGES[dataset], batch_per_process=per_gpu, world_size=8)
        assert (sampler.steps_per_epoch, config.epochs * sampler.steps_per_epoch) == (per_epoch, total), name


def test_padding_repeats_the_first_images_of_the_permutation_as_distributed_sampler_does():
    samplers = [GlobalBatchSampler(11, batch_per_process=1, rank=rank, world_size=4, seed=5) for rank in range(4)]
    seen = [index for batches in zip(*samplers, strict=True) for batch in batches for _, index in batch]
    assert len(seen) == 12 and sorted(set(seen)) == list(range(11))  # 11 images padded to 12: 3 steps of 4
    assert seen[-1] == seen[0]  # the one extra image is the permutation's first


@pytest.mark.parametrize(
    ("processes", "overrides", "layout"),
    [(1, [], (16, 1)), (4, [], (4, 1)), (4, ["train.batch_per_process=2"], (2, 2)), (16, [], (1, 1))],
)
def test_other_process_counts_split_the_global_batch_or_accumulate(processes, overrides, layout):
    config = get_config("voc-r50-d8", overrides).train
    assert (micro_batch_size(config, processes), accumulation_steps(config, processes)) == layout


@pytest.mark.parametrize(("processes", "overrides"), [(3, []), (16, ["train.batch_size=8"])])
def test_a_batch_that_does_not_split_over_the_processes_is_refused_in_one_line(processes, overrides):
    with pytest.raises(TrainingError, match=r"does not split over \d+ processes: use a process count") as error:
        accumulation_steps(get_config("voc-r50-d8", overrides).train, processes)
    assert "\n" not in str(error.value)
