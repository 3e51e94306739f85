"""Measures scikit-learn lacks (cvae.metrics): active latent units."""

import numpy as np
import pytest

from cvae.metrics import active_units


def test_a_unit_is_active_when_its_mean_varies_beyond_the_threshold():
    rng = np.random.default_rng(0)
    Z = np.column_stack([rng.normal(0, 1, 500), rng.normal(0, 0.05, 500), np.zeros(500), rng.normal(3, 0.2, 500)])
    assert active_units(Z) == 2  # variances about 1, 0.0025, 0 and 0.04
    assert active_units(Z, threshold=0.001) == 3 and active_units(Z, threshold=2.0) == 0
    assert active_units(Z.tolist()) == 2  # any array-like


@pytest.mark.parametrize("Z", [np.zeros(3), np.zeros((1, 4)), np.zeros((2, 2, 2))])
def test_anything_but_two_rows_of_codes_is_refused(Z):
    with pytest.raises(ValueError, match="2-D with at least 2 samples"):
        active_units(Z)
