"""The vote that transfers labels for a model without a classifier (cvae.neighbors.vote)."""

import numpy as np
import torch

from cvae.neighbors.vote import class_votes, vote_smoothing


def test_votes_count_the_classes_of_the_nearest_rows_and_can_leave_a_row_out():
    reference = torch.tensor([[0.0], [1.0], [2.0], [10.0], [11.0]])
    codes = np.array([0, 0, 1, 1, 1])
    votes = class_votes(torch.tensor([[0.4], [10.6]]), reference, codes, 3, 2)
    np.testing.assert_array_equal(votes, [[2, 1], [0, 3]])
    own = class_votes(reference[[0, 3]], reference, codes, 1, 2, exclude=np.array([0, 3]))  # the nearest other row
    np.testing.assert_array_equal(own, [[1, 0], [0, 1]])
    assert class_votes(reference[:0], reference, codes, 3, 2).shape == (0, 2)


def test_the_vote_is_smoothed_as_the_labelled_rows_own_votes_say():
    rng = np.random.default_rng(0)
    reference = torch.from_numpy(np.repeat(np.eye(3, 2) * 50, 100, axis=0) + rng.normal(size=(300, 2))).float()
    codes = np.repeat([0, 1, 2], 100)
    assert vote_smoothing(reference, codes, 5, 3, rng) == 0.01  # every own vote right: hardly smoothed
    assert vote_smoothing(reference, rng.permutation(codes), 5, 3, rng) == 3.0  # votes say nothing: smoothed most
    assert vote_smoothing(reference[:1], codes[:1], 5, 3, rng) == 1.0
