"""The resumable, shard-aware sample stream."""

import itertools

from dualteacher.data.sampler import ShardSampler, ShuffledStreamSampler


def take(sampler, n):
    return list(itertools.islice(iter(sampler), n))


def test_each_pass_is_a_fresh_permutation() -> None:
    stream = take(ShuffledStreamSampler(10, seed=3), 30)
    passes = [[i for i, _ in stream[k : k + 10]] for k in (0, 10, 20)]
    assert all(sorted(p) == list(range(10)) for p in passes)
    assert passes[0] != passes[1] != passes[2]


def test_resume_continues_the_same_stream() -> None:
    full = take(ShuffledStreamSampler(7, seed=1), 25)
    resumed = take(ShuffledStreamSampler(7, seed=1, start=11), 14)
    assert resumed == full[11:]


def test_ranks_split_a_pass_and_match_a_single_process() -> None:
    single = take(ShuffledStreamSampler(8, seed=5), 8)
    r0 = take(ShuffledStreamSampler(8, seed=5, rank=0, world_size=2), 4)
    r1 = take(ShuffledStreamSampler(8, seed=5, rank=1, world_size=2), 4)
    assert sorted(r0 + r1) == sorted(single)
    assert r0 == single[0::2] and r1 == single[1::2]


def test_shard_sampler_scores_every_image_once() -> None:
    shards = [list(ShardSampler(11, rank=r, world_size=3)) for r in range(3)]
    assert sorted(i for s in shards for i in s) == list(range(11))
