"""Seeded draws (cvae._random): row keys from content and seed."""

import numpy as np
import pytest


def test_row_keys_come_from_the_rows_content_and_the_seed():
    from cvae._random import row_keys

    rows = np.random.default_rng(0).random((500, 7)).astype(np.float32)
    keys = row_keys(rows, 3)
    assert keys.shape == (500,) and keys.min() >= 0 and keys.max() < 1 and len(np.unique(keys)) == 500
    # a row's key does not depend on what else is hashed with it, nor on its dtype's width
    np.testing.assert_array_equal(row_keys(rows[[9, 9, 2]].astype(np.float64), 3), keys[[9, 9, 2]])
    assert not np.array_equal(row_keys(rows, 4), keys)


def test_every_stream_is_named_and_streams_differ():
    import torch
    from cvae import _random

    with pytest.raises(KeyError, match="no random stream named 'nosie'"):
        _random.generator("nosie", 0)
    with pytest.raises(TypeError, match="drawn by numpy"):
        _random.generator("split", 0)
    assert not torch.equal(torch.rand(5, generator=_random.generator("noise", 7, 0, 0)),
                           torch.rand(5, generator=_random.generator("pick", 7, 0, 0, 0)))
    # the same stream and keys give the same draws; another step, others
    assert torch.equal(torch.rand(5, generator=_random.generator("noise", 7, 0, 1)),
                       torch.rand(5, generator=_random.generator("noise", 7, 0, 1)))
    assert not np.array_equal(_random.rng("replay", 7, 1).random(5), _random.rng("replay", 7, 2).random(5))


def test_streams_that_predate_the_tags_draw_what_they_drew():
    """A seed gives the models it gave: the split is numpy's default_rng(seed), the epoch
    order torch's manual_seed(seed + epoch), the tagged streams SeedSequence([seed, tag, ...])."""
    import torch
    from cvae import _random
    from cvae.neighbors.placement import REFINE_SEED

    np.testing.assert_array_equal(_random.rng("split", 5).permutation(9), np.random.default_rng(5).permutation(9))
    assert torch.equal(torch.randperm(9, generator=_random.generator("epoch_order", 5, 2)),
                       torch.randperm(9, generator=torch.Generator().manual_seed(7)))
    state = int(np.random.SeedSequence([5, 0]).generate_state(1, np.uint64)[0])
    assert torch.equal(torch.rand(3, generator=_random.generator("init", 5)),
                       torch.rand(3, generator=torch.Generator().manual_seed(state)))
    # the placement's fixed sample (drawn inside neighbors/, which imports nothing) is the stream's
    assert torch.equal(torch.randperm(9, generator=_random.generator("refine")),
                       torch.randperm(9, generator=torch.Generator().manual_seed(REFINE_SEED)))
