"""Callbacks of the training loop (cvae/training/callbacks.py) that no other file tests by name."""

import torch

from cvae.training.callbacks import TrainOnly


class _Trainer:
    def __init__(self, model, optimizer):
        self.model, self.optimizer = model, optimizer


def test_train_only_moves_the_chosen_columns_and_nothing_else():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.Linear(3, 2))
    optimizer = torch.optim.Adam(model.parameters(), lr=0.1)
    x = torch.randn(16, 4)
    model(x).square().sum().backward()
    optimizer.step()  # moments that would keep moving every parameter
    before = {k: v.clone() for k, v in model.state_dict().items()}
    callback = TrainOnly({"0.weight": [1, 3]})
    callback.on_train_begin(_Trainer(model, optimizer))
    for _ in range(3):
        optimizer.zero_grad()
        model(x).square().sum().backward()
        optimizer.step()
    after = model.state_dict()
    changed = ~torch.isclose(after["0.weight"], before["0.weight"], rtol=0, atol=0)
    assert changed[:, [1, 3]].all() and not changed[:, [0, 2]].any()
    for name in ("0.bias", "1.weight", "1.bias"):
        assert torch.equal(after[name], before[name])
    callback.on_train_end(None)
    optimizer.zero_grad()
    model(x).square().sum().backward()
    assert model[1].weight.grad.abs().sum() > 0  # the hooks are gone
