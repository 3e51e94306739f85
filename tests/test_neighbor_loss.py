"""The neighbour terms (cvae.nn.neighbor_loss): UMAP's cross-entropy, InfoNCE under a Cauchy kernel, and
their gradients."""

import pytest
import torch


def test_neighbor_loss_is_umaps_cross_entropy():
    from cvae.nn.neighbor_loss import _A, _B, neighbor_loss

    e = torch.tensor([[0.0, 0.0], [1.0, 0.0]])
    neighbor = torch.tensor([[0.0, 0.5], [1.0, 2.0]])
    d2 = (e - neighbor).square().sum(dim=1)
    expected = torch.log1p(_A * d2**_B).mean()  # -log q of each pair, q = 1 / (1 + a d^2b)
    torch.testing.assert_close(neighbor_loss(e, neighbor, n_negative=0), expected)
    # Negatives: with two rows, the other row is the only negative, or the row itself (floored distance).
    torch.manual_seed(0)
    far = neighbor_loss(10 * e, 10 * e, n_negative=20)
    near = neighbor_loss(0.1 * e, 0.1 * e, n_negative=20)
    assert far < near  # repulsion is cheaper when the other rows are far away


def test_neighbor_loss_gradient_pulls_neighbors_together_and_pushes_others_apart():
    from cvae.nn.neighbor_loss import neighbor_loss

    torch.manual_seed(0)
    e = torch.randn(64, 2, requires_grad=True)
    neighbor = (e.detach() + 0.5 * torch.randn(64, 2)).requires_grad_()
    neighbor_loss(e, neighbor, n_negative=0).backward()
    with torch.no_grad():
        closer = (e - 0.1 * e.grad - (neighbor - 0.1 * neighbor.grad)).norm(dim=1)
        assert torch.all(closer < (e - neighbor).norm(dim=1))
    spread = torch.randn(64, 2).mul(0.01).requires_grad_()
    neighbor_loss(spread, spread.detach(), n_negative=5).backward()  # only repulsion acts on a clump
    with torch.no_grad():
        assert (spread - 0.01 * spread.grad).std() > spread.std()


def test_contrastive_neighbor_loss_is_infonce_with_a_cauchy_kernel():
    from cvae.nn.neighbor_loss import contrastive_neighbor_loss

    e = torch.tensor([[0.0, 0.0], [1.0, 0.0], [0.0, 3.0]])
    neighbor = torch.tensor([[0.0, 0.5], [1.0, 2.0], [2.0, 3.0]])
    q = 1 / (1 + torch.cdist(e, e).square())
    q_pair = 1 / (1 + (e - neighbor).square().sum(dim=1))
    others = q.sum(dim=1) - 1  # every other row of the batch, not the row itself (q = 1)
    expected = -torch.log(q_pair / (q_pair + others)).mean()
    torch.testing.assert_close(contrastive_neighbor_loss(e, neighbor, scale=1.0), expected)
    torch.testing.assert_close(contrastive_neighbor_loss(e, neighbor, scale=2.0),
                               contrastive_neighbor_loss(2 * e, 2 * neighbor, scale=1.0))


@pytest.mark.parametrize("loss_name", ["neighbor_loss", "contrastive_neighbor_loss"])
def test_neighbor_losses_sum_over_each_rows_pairs(loss_name):
    import cvae.nn.neighbor_loss

    loss = getattr(cvae.nn.neighbor_loss, loss_name)
    kwargs = {"n_negative": 0} if loss_name == "neighbor_loss" else {}
    torch.manual_seed(0)
    e, first, second = torch.randn(5, 2), torch.randn(5, 2), torch.randn(5, 2)
    torch.testing.assert_close(loss(e, torch.cat([first, second]), **kwargs),
                               loss(e, first, **kwargs) + loss(e, second, **kwargs))


def test_contrastive_neighbor_loss_gradient_pulls_neighbors_together_and_pushes_others_apart():
    from cvae.nn.neighbor_loss import contrastive_neighbor_loss

    torch.manual_seed(0)
    e = torch.randn(64, 2).mul(3).requires_grad_()
    neighbor = (e.detach() + 0.5 * torch.randn(64, 2)).requires_grad_()
    contrastive_neighbor_loss(e.detach(), neighbor).backward()
    with torch.no_grad():
        closer = (e - (neighbor - 0.01 * neighbor.grad)).norm(dim=1)
        assert torch.all(closer < (e - neighbor).norm(dim=1))
    spread = torch.randn(64, 2).mul(0.01).requires_grad_()
    contrastive_neighbor_loss(spread, spread.detach()).backward()  # pairs at distance 0: only repulsion acts
    with torch.no_grad():
        assert (spread - 0.01 * spread.grad).std() > spread.std()
