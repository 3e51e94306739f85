"""MADE masks (cvae.nn.made): each output sees exactly the inputs before it."""

import torch

from cvae.nn.made import autoregressive_masks


def test_masks_connect_every_output_to_all_earlier_inputs():
    order = torch.tensor([1, 0, 2])
    masks = autoregressive_masks(order, [4, 4], 1)
    reach = masks[0]
    for m in masks[1:]:
        reach = (m @ reach).clamp(max=1)
    assert torch.equal(reach, (order[:, None] > order[None, :]).float())
