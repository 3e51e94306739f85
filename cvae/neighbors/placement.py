"""Placing unseen rows by their nearest training rows, as UMAP's and openTSNE's transforms do.

The encoder maps any row to the embedding, but on rows it has not seen it keeps their
neighbourhoods less well than it keeps the training rows' (benchmarks/README.md, "Placing
unseen rows"). A :class:`NeighborReference` keeps the training rows, projected to at most
``NEIGHBOR_COMPONENTS`` principal components, beside their embedding. :meth:`place` starts an
unseen row at the median embedding of its nearest training rows and refines it for a few
Adam steps on a t-SNE-like objective against the fixed training embedding: it must pick its
neighbours out of all training rows (summed on a grid for a 2-D embedding, else out of a
fixed sample of them). Each row is placed on its own: the result does not depend on the
other rows of the call, nor on the batch size.
"""

import functools
from dataclasses import dataclass

import numpy as np
import torch

from .search import NEIGHBOR_COMPONENTS

__all__ = ["NeighborReference", "PLACEMENTS", "Placer"]

# ``placement`` values of the estimator.
PLACEMENTS = ("auto", "encoder", "neighbors")
# Training rows the projection is fitted on at most, and their float32 bytes at most.
_PROJECTION_ROWS = 20_000
_PROJECTION_BYTES = 2**28
# The refinement: Adam steps, step size in embedding units, the fixed sample of training
# rows that a placed row is contrasted with, the seed of that sample (cvae._random's
# "refine" stream, which neighbors/, a leaf, cannot import), and the Cauchy
# kernel's distance scale (the "tsne" objective's, cvae.nn.neighbor_loss).
REFINE_STEPS = 30
REFINE_LEARNING_RATE = 0.05
REFINE_NEGATIVES = 512
REFINE_SEED = 0
KERNEL_SCALE = 3.0
# The grid over a 2-D embedding (nodes per side, and the margin around the rows in units of
# the scaled embedding) for the sums over all training rows.
_GRID = 256
_GRID_MARGIN = 5.0
# Rows refined at a time: the refinement holds rows x negatives distances.
_REFINE_ROWS = 512
# A query this close (squared distance, relative to the reference rows' mean squared norm)
# to a training row is that row: it keeps the row's embedding.
_SAME_ROW = 1e-8
# Squared distances that round to the same multiple of this (relative to the reference rows'
# mean squared norm, and about 100 times float32's rounding there) are ties.
_TIE_STEP = 1e-5


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
    def build(cls, read, n_rows, n_features, module, rng, chunk_rows=4096):
        """The reference of ``n_rows`` training rows, read by ``read(indices)`` as float32
        tensors on ``module``'s device, a chunk at a time; ``module`` (a fitted
        :class:`cvae.nn.VAE`) standardizes and embeds them. Wide rows are projected onto
        principal components fitted on at most ``_PROJECTION_ROWS`` of them, drawn by
        ``rng`` (a ``numpy.random.Generator``)."""
        mean = components = None
        if n_features > 2 * NEIGHBOR_COMPONENTS and n_rows > NEIGHBOR_COMPONENTS:
            from sklearn.decomposition import PCA

            n_fit = min(n_rows, _PROJECTION_ROWS, max(4 * NEIGHBOR_COMPONENTS, _PROJECTION_BYTES // (4 * n_features)))
            sample = np.sort(rng.choice(n_rows, n_fit, replace=False))
            with torch.inference_mode():
                fitted = module.standardize(read(sample)).cpu().numpy()
            pca = PCA(NEIGHBOR_COMPONENTS, random_state=0).fit(fitted)  # the rows are drawn, the solver fixed
            device = next(module.parameters()).device
            mean = torch.from_numpy(pca.mean_.astype(np.float32)).to(device)
            components = torch.from_numpy(pca.components_.astype(np.float32)).to(device)
        empty = torch.empty(0)
        projection = cls(empty, empty, mean, components)
        rows, embedding = [], []
        with torch.inference_mode():
            for start in range(0, n_rows, chunk_rows):
                x = read(np.arange(start, min(n_rows, start + chunk_rows)))
                rows.append(projection.project(module.standardize(x)))
                embedding.append(module.embed(x).float())
        return cls(torch.cat(rows).clone(), torch.cat(embedding).clone(), mean, components)

    def project(self, standardized):
        """Standardized rows in the search space."""
        return _project(standardized, self.mean, self.components)

    def place(self, standardized, n_neighbors):
        """Embed standardized rows (float32 tensor on the reference's device) by their
        ``n_neighbors`` nearest training rows; a row equal to a training row gets its embedding.
        The rows are placed a block at a time by :meth:`placer`'s module, the one that
        :meth:`cvae.CompressionVAE.export` writes."""
        if len(standardized) == 0:
            return self.embedding.new_zeros((0, self.embedding.shape[1]))
        placer = self.placer(n_neighbors)
        block = max(1, min(_REFINE_ROWS, 2**25 // len(self.rows)))
        return torch.cat([placer(rows) for rows in standardized.split(block)])

    def placer(self, n_neighbors):
        """The placement as a :class:`Placer` module (standardized rows in, embedding out),
        built once per ``n_neighbors``."""
        n_neighbors = min(n_neighbors, len(self.rows))
        if n_neighbors not in self._placers:
            self._placers[n_neighbors] = Placer(self, n_neighbors)
        return self._placers[n_neighbors]

    @functools.cached_property
    def _placers(self):
        return {}

    @functools.cached_property
    def _field(self):  # cached_property writes the instance's __dict__, as a frozen dataclass allows
        """What repels a placed row: all training rows through a grid for a 2-D embedding,
        else a fixed sample of them; built once per reference."""
        scaled = KERNEL_SCALE * self.embedding
        if scaled.shape[1] == 2:
            return _GridField(scaled)
        generator = torch.Generator().manual_seed(REFINE_SEED)
        chosen = torch.randperm(len(scaled), generator=generator)[:REFINE_NEGATIVES]
        return _SampledField(scaled[chosen.to(scaled.device)], len(scaled))

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


class Placer(torch.nn.Module):
    """The placement of standardized rows as one torch module: the projection, the nearest
    training rows, the start at their median embedding, the refinement, and a training row's
    own embedding for a row equal to it. :meth:`NeighborReference.place` runs it a block of
    rows at a time; :func:`cvae.export.export_module` writes it whole. Every operation is
    one that ONNX and ``torch.export`` express, and each row's result depends on that row
    alone.

    Its buffers are the reference's tensors (not copies) and the field's grid or sample.
    """

    def __init__(self, reference, n_neighbors):
        super().__init__()
        self.n_neighbors = n_neighbors
        self.register_buffer("rows", reference.rows)
        self.register_buffer("embedding", reference.embedding)
        self.register_buffer("mean", reference.mean)
        self.register_buffer("components", reference.components)
        norms = reference.rows.square().sum(dim=1)
        self.register_buffer("norms", norms)
        self.register_buffer("same_row_distance", _SAME_ROW * norms.mean())
        self.register_buffer("tie_step", _TIE_STEP * norms.mean())
        self.field = reference._field

    def forward(self, standardized):
        queries = _project(standardized, self.mean, self.components)
        k = self.n_neighbors
        # The search's |q|^2 - 2 q.r + |r|^2 rounds by the shape of the batch and loses the digits
        # that tell a row from itself: the nearest are chosen among twice as many candidates
        # by distances computed row by row, so that a row's neighbours do not depend on its batch.
        ranking = torch.addmm(self.norms[None, :], queries, self.rows.T, alpha=-2)
        candidates = ranking.topk(min(2 * k, len(self.rows)), dim=1, largest=False).indices
        candidates = candidates.sort(dim=1).values
        distances = (queries[:, None, :] - self.rows[candidates]).square().sum(dim=-1)
        # Rows at equal distances (common in integer data) differ only by rounding, which
        # differs between runtimes: distances are ranked on a grid much coarser than float32's
        # rounding, and rows that share a grid point in the order they came.
        order = _order_by_rank((distances / self.tie_step).round())
        nearest = distances.gather(1, order[:, :1])
        neighbors = self.embedding[candidates.gather(1, order[:, :k])]
        # torch.median's lower median, written as a sort, which ONNX expresses
        start = neighbors.sort(dim=1).values[:, (k - 1) // 2]
        placed = _refine(start, neighbors, self.field)
        same = nearest <= self.same_row_distance
        placed = torch.where(same, neighbors[:, 0], placed)
        # A row whose distances overflow has no nearest rows: NaN, which the caller reports.
        overflowed = ~queries.square().sum(dim=1, keepdim=True).isfinite()
        return placed.masked_fill(overflowed, float("nan"))


def _order_by_rank(distances):
    """The order that sorts each row of ``distances``, equal distances in the order they came:
    torch's ``topk`` leaves ties in an unspecified order and ONNX has no stable sort, so the
    ranks are counted pairwise and scattered, which every runtime computes alike."""
    before = distances[:, :, None] < distances[:, None, :]
    position = torch.arange(distances.shape[1], device=distances.device)
    tied_before = (distances[:, :, None] == distances[:, None, :]) & (position[:, None] < position[None, :])
    rank = (before | tied_before).sum(dim=1)
    return torch.zeros_like(rank).scatter(1, rank, position.expand_as(rank).contiguous())


def _project(standardized, mean, components):
    return standardized if components is None else (standardized - mean) @ components.T


def _refine(start, neighbors, field):
    """Adam steps on ``-log(q_ij / S_i)`` for each row ``i`` and its neighbours ``j``, with
    ``S_i = sum_j q_ij + sum_k q_ik`` over its neighbours and the training rows ``k`` that
    ``field`` sums, under the Cauchy kernel ``q = 1 / (1 + (s d)^2)``.

    The gradient is written out: ``(2 / n_j) sum_j q_ij (z_i - y_j) - (2 / S_i) sum_k q_ik^2
    (z_i - y_k)``, ``k`` over the neighbours and the field. Rows do not interact (Adam scales
    each coordinate alone), and every sum runs over one row's terms elementwise, so a row's
    place does not depend on the other rows of its batch.
    """
    pairs = KERNEL_SCALE * neighbors
    z = KERNEL_SCALE * start
    first, second = torch.zeros_like(z), torch.zeros_like(z)
    beta1, beta2, eps = 0.9, 0.999, 1e-8
    lr = KERNEL_SCALE * REFINE_LEARNING_RATE
    # written in few operations: an exported graph unrolls the steps, and on one row its
    # time is the number of operations
    for step in range(1, REFINE_STEPS + 1):
        to_pairs = z[:, None, :] - pairs
        q_pairs = 1 / (1 + to_pairs.square().sum(dim=-1))
        total, repulsion = field(z)
        inverse = 2 / (total + q_pairs.sum(dim=1, keepdim=True))
        # attraction and the pairs' share of the repulsion, one weight per pair
        weights = q_pairs * (2 / pairs.shape[1] - inverse * q_pairs)
        gradient = (weights[..., None] * to_pairs).sum(dim=1) - inverse * repulsion
        first = beta1 * first + (1 - beta1) * gradient
        second = beta2 * second + (1 - beta2) * gradient.square()
        z = z - (lr / (1 - beta1**step)) * first / ((second / (1 - beta2**step)).sqrt() + eps)
    return z / KERNEL_SCALE


class _SampledField(torch.nn.Module):
    """``sum_k q(z, y_k)`` and ``sum_k q(z, y_k)^2 (z - y_k)`` over ``n_rows`` training rows,
    estimated from a sample ``points`` of them (scaled embedding)."""

    def __init__(self, points, n_rows):
        super().__init__()
        self.register_buffer("points", points)
        self.weight = n_rows / len(points)

    def forward(self, z):
        to_points = z[:, None, :] - self.points
        q = 1 / (1 + to_points.square().sum(dim=-1))
        return self.weight * q.sum(dim=1, keepdim=True), self.weight * (q.square()[..., None] * to_points).sum(dim=1)


class _GridField(torch.nn.Module):
    """The same sums over every training row of a 2-D embedding, as FIt-SNE computes them:
    the rows are spread onto a ``_GRID`` x ``_GRID`` grid (bilinear weights), the sums at the
    grid's nodes are convolutions with the kernels (by FFT), and a point reads them off the
    grid by bilinear interpolation. The cost is the grid's, not the rows'."""

    def __init__(self, points):
        super().__init__()
        points = points.double()
        centre = (points.amax(dim=0) + points.amin(dim=0)) / 2
        half = (points.amax(dim=0) - points.amin(dim=0)).max() / 2 + _GRID_MARGIN
        low, spacing = centre - half, 2 * half / (_GRID - 1)
        dx, dy = torch.tensor([0, 0, 1, 1]), torch.tensor([0, 1, 0, 1])  # a cell's corners
        counts = torch.zeros(_GRID * _GRID, dtype=torch.float64, device=points.device)
        index, weight = _corners((points - low) / spacing, dx.to(points.device), dy.to(points.device))
        for corner in range(4):
            counts.index_add_(0, index[:, corner], weight[:, corner])
        offsets = torch.arange(-(_GRID - 1), _GRID, dtype=torch.float64, device=points.device) * spacing
        ux, uy = torch.meshgrid(offsets, offsets, indexing="ij")
        q = 1 / (1 + ux.square() + uy.square())
        grids = _convolve(counts.view(_GRID, _GRID), torch.stack([q, q.square() * ux, q.square() * uy]))
        # node (i, j) at row j, column i of the image, so that a point (x, y) reads it at (i, j)
        self.register_buffer("image", grids.transpose(1, 2)[None].to(torch.float32).contiguous())
        scale = 2 / (spacing * (_GRID - 1))
        self.register_buffer("unit_scale", scale.float())
        self.register_buffer("unit_shift", (-1 - low * scale).float())

    def forward(self, z):
        # grid_sample's bilinear read (one ONNX GridSample): coordinates in [-1, 1] from the
        # grid's first node to its last, x along the last dimension of the image
        # (border padding clamps a point outside the grid to its edge)
        at = (z * self.unit_scale + self.unit_shift).reshape(1, -1, 1, 2)
        read = torch.nn.functional.grid_sample(self.image, at, mode="bilinear", padding_mode="border",
                                               align_corners=True)
        read = read.reshape(3, -1).T
        return read[:, :1], read[:, 1:]


def _corners(position, dx, dy):
    """The four grid nodes around each point at ``position`` (in units of the grid's spacing
    from its first node): flat indices and bilinear weights, each of shape ``(n_points, 4)``."""
    position = position.clamp(0, _GRID - 1 - 1e-6)
    cell = position.floor()
    fraction = position - cell
    cell = cell.long()
    wx = torch.stack([1 - fraction[:, 0], fraction[:, 0]], dim=1)
    wy = torch.stack([1 - fraction[:, 1], fraction[:, 1]], dim=1)
    return (cell[:, :1] + dx) * _GRID + cell[:, 1:] + dy, wx[:, dx] * wy[:, dy]


def _convolve(grid, kernels):
    """``out[c, p] = sum_r grid[r] * kernels[c, p - r + G - 1]`` for each node ``p`` of the
    ``G x G`` grid: a linear convolution by FFT, zero-padded to avoid wrapping around."""
    size = grid.shape[0]
    padded = 3 * size
    spectrum = torch.fft.rfft2(grid, s=(padded, padded))
    full = torch.fft.irfft2(spectrum * torch.fft.rfft2(kernels, s=(padded, padded)), s=(padded, padded))
    return full[:, size - 1 : 2 * size - 1, size - 1 : 2 * size - 1]
