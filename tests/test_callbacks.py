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


def test_the_classifier_loss_is_the_weighted_cross_entropy_of_labelled_rows_drawn_by_step():
    import numpy as np

    from cvae.data.sources import ArraySource
    from cvae.nn import VAE
    from cvae.training.callbacks import ClassifierLoss

    X = np.random.default_rng(0).normal(size=(40, 4)).astype(np.float32)
    model = VAE(4, 2, [8], torch.zeros(4), torch.ones(4), generator=torch.Generator().manual_seed(0), n_classes=3)
    trainer = _Trainer(model, None)
    trainer.device, trainer.generator, trainer.step = torch.device("cpu"), None, 7
    indices, codes = np.arange(0, 40, 4), np.arange(10) % 3  # ten labelled rows
    callback = ClassifierLoss(ArraySource(X), indices, codes, weight=2.5, seed=3, batch_size=6)
    term = callback.extra_loss(trainer)
    assert torch.equal(callback.extra_loss(trainer), term)  # the same step draws the same rows
    trainer.step = 8
    assert not torch.equal(callback.extra_loss(trainer), term)
    term.backward()  # it trains the classifier and the encoder under it
    assert model.classifier[-1].weight.grad.abs().sum() > 0 and model.encoder[0].weight.grad.abs().sum() > 0
    one = ClassifierLoss(ArraySource(X), np.array([5]), np.array([2]), weight=2.5, seed=3, batch_size=6)
    with torch.no_grad():  # one labelled row, drawn six times: the weighted cross-entropy of that row
        expected = 2.5 * torch.nn.functional.cross_entropy(model.classify(torch.from_numpy(X[5:6])), torch.tensor([2]))
        torch.testing.assert_close(one.extra_loss(trainer), expected)
