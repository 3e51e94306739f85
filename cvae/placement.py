"""Placing unseen rows by their nearest training rows, as UMAP's and openTSNE's transforms do.

The encoder maps any row to the embedding, but on rows it has not seen it keeps their
neighbourhoods less well than it keeps the training rows' (benchmarks/README.md, "Placing
unseen rows"). A :class:`NeighborReference` keeps the training rows, projected to at most
``NEIGHBOR_COMPONENTS`` principal components, beside their embedding. :meth:`place` starts an
unseen row at the median embedding of its nearest training rows and refines it for a few
Adam steps on a t-SNE-like objective against the fixed training embedding: it must pick its
neighbours out of a fixed sample of training rows. Each row is placed on its own: the
result does not depend on the other rows of the call, nor on the batch size.
"""

import math
from dataclasses import dataclass

import numpy as np
import torch

from .neighbor_search import NEIGHBOR_COMPONENTS, nearest_rows

__all__ = ["NeighborReference", "PLACEMENTS"]

# ``placement`` values of the estimator.
PLACEMENTS = ("auto", "encoder", "neighbors")
# Training rows the projection is fitted on at most, and their float32 bytes at most.
_PROJECTION_ROWS = 20_000
_PROJECTION_BYTES = 2**28
# The refinement: Adam steps, step size in embedding units, the fixed sample of training
# rows that a placed row is contrasted with, the seed of that sample, and the Cauchy
# kernel's distance scale (the "tsne" objective's, cvae.nn.neighbors).
REFINE_STEPS = 30
REFINE_LEARNING_RATE = 0.05
REFINE_NEGATIVES = 512
# The sample stands for this many rows: each of its terms counts this / REFINE_NEGATIVES times.
REFINE_PARTITION_ROWS = 4096
REFINE_SEED = 0
KERNEL_SCALE = 3.0
# Rows refined at a time: the refinement holds rows x negatives distances.
_REFINE_ROWS = 512
# A query this close (squared distance, relative to the reference rows' mean squared norm)
# to a training row is that row: it keeps the row's embedding.
_SAME_ROW = 1e-8


@dataclass(frozen=True)
class NeighborReference:
    """Training rows in a search space, and their embedding.

    Attributes
    ----------
    rows : torch.Tensor of shape (n_rows, n_dims)
        Standardized training rows (as the encoder sees them), projected when wide.
    embedding : torch.Tensor of shape (n_rows, n_components)
        The encoder's embedding of those rows.
    mean, components : torch.Tensor or None
        The projection ``(x - mean) @ components.T`` onto principal components, or ``None``
        for rows of at most ``2 * NEIGHBOR_COMPONENTS`` features, searched as they are.
    """

    rows: torch.Tensor
    embedding: torch.Tensor
    mean: torch.Tensor = None
    components: torch.Tensor = None

    @classmethod
    def build(cls, read, n_rows, n_features, module, chunk_rows=4096, seed=0):
        """The reference of ``n_rows`` training rows, read by ``read(indices)`` as float32
        tensors on ``module``'s device, a chunk at a time; ``module`` (a fitted
        :class:`cvae.nn.VAE`) standardizes and embeds them. Wide rows are projected onto
        principal components fitted on at most ``_PROJECTION_ROWS`` of them."""
        mean = components = None
        if n_features > 2 * NEIGHBOR_COMPONENTS and n_rows > NEIGHBOR_COMPONENTS:
            from sklearn.decomposition import PCA

            n_fit = min(n_rows, _PROJECTION_ROWS, max(4 * NEIGHBOR_COMPONENTS, _PROJECTION_BYTES // (4 * n_features)))
            sample = np.sort(np.random.default_rng(seed).choice(n_rows, n_fit, replace=False))
            with torch.inference_mode():
                fitted = module.likelihood.standardize(read(sample)).cpu().numpy()
            pca = PCA(NEIGHBOR_COMPONENTS, random_state=seed).fit(fitted)
            device = next(module.parameters()).device
            mean = torch.from_numpy(pca.mean_.astype(np.float32)).to(device)
            components = torch.from_numpy(pca.components_.astype(np.float32)).to(device)
        empty = torch.empty(0)
        projection = cls(empty, empty, mean, components)
        rows, embedding = [], []
        with torch.inference_mode():
            for start in range(0, n_rows, chunk_rows):
                x = read(np.arange(start, min(n_rows, start + chunk_rows)))
                rows.append(projection.project(module.likelihood.standardize(x)))
                embedding.append(module.embed(x).float())
        return cls(torch.cat(rows).clone(), torch.cat(embedding).clone(), mean, components)

    def project(self, standardized):
        """Standardized rows in the search space."""
        if self.components is None:
            return standardized
        return (standardized - self.mean) @ self.components.T

    def place(self, standardized, n_neighbors):
        """Embed standardized rows (float32 tensor on the reference's device) by their
        ``n_neighbors`` nearest training rows; a row equal to a training row gets its embedding."""
        queries = self.project(standardized)
        if len(queries) == 0:
            return self.embedding.new_zeros((0, self.embedding.shape[1]))
        # The search's |q|^2 - 2 q.r + |r|^2 rounds by the shape of the batch and loses the digits
        # that tell a row from itself: the nearest are chosen among twice as many candidates
        # by distances computed row by row, so that a row's neighbours do not depend on its batch.
        n_neighbors = min(n_neighbors, len(self.rows))
        _, candidates = nearest_rows(queries, self.rows, 2 * n_neighbors)
        candidates = candidates.sort(dim=1).values
        distances = (queries[:, None, :] - self.rows[candidates]).square().sum(dim=-1)
        nearest = distances.topk(n_neighbors, dim=1, largest=False)
        neighbors = self.embedding[candidates.gather(1, nearest.indices)]
        start = neighbors.median(dim=1).values
        negatives = self._negatives()
        # the sample counts as REFINE_PARTITION_ROWS rows (or all of them, when fewer)
        log_weight = math.log(min(REFINE_PARTITION_ROWS, len(self.rows)) / len(negatives))
        placed = torch.cat([_refine(start[rows], neighbors[rows], negatives, log_weight)
                            for rows in torch.arange(len(start)).split(_REFINE_ROWS)])
        same = nearest.values[:, 0] <= _SAME_ROW * self.rows.square().sum(dim=1).mean()
        placed = torch.where(same[:, None], neighbors[:, 0], placed)
        # A row whose distances overflow has no nearest rows: NaN, which the caller reports.
        overflowed = ~queries.square().sum(dim=1).isfinite()
        return placed.masked_fill(overflowed[:, None], float("nan"))

    def _negatives(self):
        generator = torch.Generator().manual_seed(REFINE_SEED)
        chosen = torch.randperm(len(self.embedding), generator=generator)[:REFINE_NEGATIVES]
        return self.embedding[chosen.to(self.embedding.device)]

    def state_dict(self):
        return {"rows": self.rows, "embedding": self.embedding, "mean": self.mean, "components": self.components}

    @classmethod
    def from_state(cls, state, n_components, where):
        """The reference saved by :meth:`state_dict`, checked; ``where`` names its file in errors."""
        try:
            rows, embedding, mean, components = (state[k] for k in ("rows", "embedding", "mean", "components"))
        except (KeyError, TypeError):
            raise ValueError(f"Cannot read the neighbour reference in {where}: it is incomplete.") from None
        tensors = [t for t in (rows, embedding, mean, components) if t is not None]
        ok = all(isinstance(t, torch.Tensor) and t.dtype == torch.float32 and t.isfinite().all() for t in tensors)
        ok = ok and rows.ndim == 2 and embedding.shape == (len(rows), n_components) and len(rows) > 0
        if ok and components is not None:
            ok = mean is not None and components.shape[0] == rows.shape[1] and mean.shape == (components.shape[1],)
        if not ok:
            raise ValueError(f"Cannot read the neighbour reference in {where}: its arrays are damaged.")
        return cls(rows, embedding, mean, components)

    def to(self, device):
        moved = [None if t is None else t.to(device) for t in (self.rows, self.embedding, self.mean, self.components)]
        return NeighborReference(*moved)


def _refine(start, neighbors, negatives, log_weight):
    """Adam steps on ``-log(q_ij / sum_k q_ik)`` for each row ``i`` and its neighbours ``j``,
    ``k`` over its neighbours and the fixed ``negatives`` (each counted ``exp(log_weight)``
    times), under the Cauchy kernel ``q = 1 / (1 + (s d)^2)``.

    The gradient is written out: with ``S_i = sum_k q_ik``, it is
    ``(2 / n_j) sum_j q_ij (z_i - y_j) - (2 / S_i) sum_k q_ik^2 (z_i - y_k)``. Rows do not
    interact (Adam scales each coordinate alone), and every sum runs over one row's terms
    elementwise, so a row's place does not depend on the other rows of its batch.
    """
    pairs, others = KERNEL_SCALE * neighbors, KERNEL_SCALE * negatives
    z = KERNEL_SCALE * start
    weight = math.exp(log_weight)
    first, second = torch.zeros_like(z), torch.zeros_like(z)
    beta1, beta2, eps = 0.9, 0.999, 1e-8
    lr = KERNEL_SCALE * REFINE_LEARNING_RATE
    for step in range(1, REFINE_STEPS + 1):
        to_pairs = z[:, None, :] - pairs
        q_pairs = 1 / (1 + to_pairs.square().sum(dim=-1))
        to_others = z[:, None, :] - others
        q_others = 1 / (1 + to_others.square().sum(dim=-1))
        total = q_pairs.sum(dim=1) + weight * q_others.sum(dim=1)
        repulsion = (q_pairs.square()[..., None] * to_pairs).sum(dim=1)
        repulsion += weight * (q_others.square()[..., None] * to_others).sum(dim=1)
        gradient = (2 / pairs.shape[1]) * (q_pairs[..., None] * to_pairs).sum(dim=1) - (2 / total)[:, None] * repulsion
        first = beta1 * first + (1 - beta1) * gradient
        second = beta2 * second + (1 - beta2) * gradient.square()
        step_size = lr / (1 - beta1**step)
        z = z - step_size * first / ((second / (1 - beta2**step)).sqrt() + eps)
    return z / KERNEL_SCALE
