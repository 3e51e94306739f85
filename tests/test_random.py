"""Seeded draws (cvae._random): row keys from content and seed."""

import numpy as np


def test_row_keys_come_from_the_rows_content_and_the_seed():
    from cvae._random import row_keys

    rows = np.random.default_rng(0).random((500, 7)).astype(np.float32)
    keys = row_keys(rows, 3)
    assert keys.shape == (500,) and keys.min() >= 0 and keys.max() < 1 and len(np.unique(keys)) == 500
    # a row's key does not depend on what else is hashed with it, nor on its dtype's width
    np.testing.assert_array_equal(row_keys(rows[[9, 9, 2]].astype(np.float64), 3), keys[[9, 9, 2]])
    assert not np.array_equal(row_keys(rows, 4), keys)
