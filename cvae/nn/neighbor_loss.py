"""A loss that keeps data-space neighbours together in the embedding, as parametric UMAP does."""

import torch

__all__ = ["NEIGHBOR_OBJECTIVES", "contrastive_neighbor_loss", "neighbor_loss"]

# UMAP's low-dimensional similarity 1 / (1 + a d^(2b)), with the a and b that umap-learn
# fits for its defaults min_dist=0.1 and spread=1.0 (McInnes, Healy and Melville, 2018).
_A = 1.577
_B = 0.8951
# Squared distances are floored before the power, whose gradient is infinite at zero. The
# repulsion's floor is umap-learn's 0.001: below it, two rows of the batch that happen to be
# near each other (often of the same kind) would be pushed apart without bound.
_MIN_SQUARED_DISTANCE = {"attract": 1e-6, "repel": 1e-3}


def _attraction(squared_distance):
    """``-log q`` for UMAP's similarity ``q = 1 / (1 + a d^(2b))``."""
    return torch.log1p(_A * squared_distance.clamp_min(_MIN_SQUARED_DISTANCE["attract"]) ** _B)


def _repulsion(squared_distance):
    """``-log(1 - q)``."""
    ad = _A * squared_distance.clamp_min(_MIN_SQUARED_DISTANCE["repel"]) ** _B
    return torch.log1p(ad) - torch.log(ad)


def neighbor_loss(embedding, neighbor_embedding, n_negative=5, scale=1.0, weights=None, gather=None, generator=None):
    """UMAP's fuzzy cross-entropy between a batch and data-space neighbours of its rows.

    Each row is pulled towards each of its neighbours (``-log q``) and, once per
    neighbour, pushed away from ``n_negative`` other rows of the batch drawn at random
    (``-log(1 - q)``), the negative sampling of UMAP and parametric UMAP.

    Parameters
    ----------
    embedding : torch.Tensor of shape (batch, n_latent)
        Posterior means of the batch.
    neighbor_embedding : torch.Tensor of shape (pairs_per_row * batch, n_latent)
        Posterior means of data-space nearest neighbours of the rows: block ``j`` holds one
        neighbour of every row, in the rows' order.
    n_negative : int, default=5
    scale : float, default=1.0
        Distances are measured after multiplying the embedding by ``scale``.
    weights : torch.Tensor of shape (batch,), default=None
        Weight of each row's pairs.
    gather : callable, default=None
        Every process's rows of the embedding, from this process's (see
        :class:`cvae.nn.vae.LossSettings`): negatives are drawn from all of them.
    generator : torch.Generator, default=None
        Where the negatives are drawn from; ``None`` means torch's default generator.

    Returns
    -------
    loss : torch.Tensor of shape ()
        Mean over rows of the sum over a row's pairs of the attraction plus the
        ``n_negative`` repulsions: each pair counts as much however many a row has.
    """
    pairs_per_row = len(neighbor_embedding) // len(embedding)
    candidates = None if gather is None else scale * gather(embedding)[0]
    embedding = scale * embedding.repeat(pairs_per_row, 1)
    loss = _attraction((embedding - scale * neighbor_embedding).square().sum(dim=1))
    for _ in range(n_negative):
        if candidates is None:
            others = embedding[torch.randperm(len(embedding), generator=generator, device=embedding.device)]
        else:
            pick = torch.randint(len(candidates), (len(embedding),), generator=generator, device=embedding.device)
            others = candidates[pick]
        loss = loss + _repulsion((embedding - others).square().sum(dim=1))
    return _weighted_mean(loss, weights, pairs_per_row) * pairs_per_row


def contrastive_neighbor_loss(embedding, neighbor_embedding, scale=3.0, weights=None, gather=None, generator=None):
    """InfoNCE with a Cauchy kernel: each row must pick its neighbour out of the batch.

    For a pair (row ``i``, neighbour ``j``) the loss is ``-log(q_ij / (q_ij + sum_k q_ik))``
    with ``q = 1 / (1 + d^2)`` and ``k`` running over the other rows of the batch. With
    many negatives this approximates t-SNE's normalised objective (Damrich et al., 2023,
    "From t-SNE to UMAP with contrastive learning"), which keeps finer local structure
    than UMAP's negative sampling.

    Parameters
    ----------
    embedding : torch.Tensor of shape (batch, n_latent)
        Posterior means of the batch.
    neighbor_embedding : torch.Tensor of shape (pairs_per_row * batch, n_latent)
        As for :func:`neighbor_loss`.
    scale : float, default=3.0
        Distances are measured after multiplying the embedding by ``scale``, which lets
        clusters part without spreading the posterior means far from the prior (the choice
        of 3 is measured in benchmarks/README.md).
    weights : torch.Tensor of shape (batch,), default=None
        Weight of each row's pairs.
    gather : callable, default=None
        Every process's rows of the embedding, from this process's, and where this
        process's begin (see :class:`cvae.nn.vae.LossSettings`): each row must pick its
        neighbour out of all of them, the batch of all processes.
    generator : torch.Generator, default=None
        Unused (every other row is a negative); taken as every objective takes it.

    Returns
    -------
    loss : torch.Tensor of shape ()
        Mean over rows of the sum over a row's pairs.
    """
    n = len(embedding)
    pairs_per_row = len(neighbor_embedding) // n
    candidates, offset = (embedding, 0) if gather is None else gather(embedding)
    anchors = scale * embedding.repeat(pairs_per_row, 1)
    log_q = -torch.log1p(torch.cdist(anchors, scale * candidates).square())
    log_q_pair = -torch.log1p((anchors - scale * neighbor_embedding).square().sum(dim=1))
    # A row is no negative of itself: its own column holds the pair instead.
    own_column = offset + torch.arange(len(anchors), device=anchors.device) % n
    log_q = log_q.scatter(1, own_column[:, None], log_q_pair[:, None])
    if weights is None:
        return torch.nn.functional.cross_entropy(log_q, own_column) * pairs_per_row
    per_pair = torch.nn.functional.cross_entropy(log_q, own_column, reduction="none")
    return _weighted_mean(per_pair, weights, pairs_per_row) * pairs_per_row


def _weighted_mean(per_pair, weights, pairs_per_row):
    """Mean of per-pair terms, each times its row's weight (``weights`` repeated per block)."""
    if weights is None:
        return per_pair.mean()
    return (per_pair * weights.repeat(pairs_per_row)).mean()


# The estimator's ``neighbor_objective`` values and the losses they select.
NEIGHBOR_OBJECTIVES = {"umap": neighbor_loss, "tsne": contrastive_neighbor_loss}
