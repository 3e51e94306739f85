"""Figures of embeddings, decoded latent grids and training histories.

Needs the ``plot`` extra (matplotlib). Each function returns a
:class:`matplotlib.figure.Figure` built without pyplot, so nothing is added to pyplot's
list of open figures and no backend is changed; pass ``ax`` to draw into an existing
pyplot figure instead (for example to show it with ``plt.show()``).
"""

import numpy as np

__all__ = ["embedding_range", "latent_grid", "plot_embedding", "plot_history", "plot_latent_grid", "square_image_shape",
           "tensorboard_figures"]

DPI = 100
# Above this many classes the colour bar shows a continuous scale instead of one colour per class.
_MAX_DISCRETE_CLASSES = 20


def _new_figure(figsize):
    try:
        from matplotlib.figure import Figure
    except ImportError as exc:
        raise ImportError(
            "Plotting needs matplotlib: pip install matplotlib (in a clone: pip install -e '.[plot]')."
        ) from exc
    return Figure(figsize=figsize, dpi=DPI, layout="constrained")


def _new_axes(ax, figsize):
    if ax is not None:
        return ax.figure, ax
    fig = _new_figure(figsize)
    return fig, fig.subplots()


def _finish(fig, filename):
    if filename is not None:
        fig.savefig(filename, dpi=DPI)
    return fig


def _encode_labels(labels, categories):
    """Integer codes and the names to show for them: numbers in increasing order, a
    categorical's categories in their order, other labels in their order of first appearance."""
    order = getattr(getattr(labels, "cat", labels), "categories", None)  # a pandas Categorical or its Series
    labels = np.asarray(labels)
    if labels.dtype.kind == "f" and np.all(labels == np.round(labels)):
        labels = labels.astype(np.int64)  # a label column read from a float table
    values, first, codes = np.unique(labels, return_index=True, return_inverse=True)
    codes = codes.ravel()
    if order is not None or labels.dtype.kind not in "iufb":
        if order is not None:
            rank = {value: k for k, value in enumerate(np.asarray(order))}
            keys = [rank.get(value, len(rank)) for value in values]
        else:
            keys = first
        new_order = np.argsort(keys, kind="stable")
        values, codes = values[new_order], np.argsort(new_order)[codes]
    if categories is not None and np.issubdtype(labels.dtype, np.integer):
        categories = list(categories)
        if values.min() < 0 or values.max() >= len(categories):
            raise ValueError(
                f"categories has {len(categories)} names, but labels range over {values.min()}..{values.max()}."
            )
        names = [str(categories[v]) for v in values]
    else:
        names = [str(v) for v in values]
    return codes, names


def plot_embedding(Z, labels=None, categories=None, *, ax=None, filename=None, title=None, label_name="label",
                   figsize=(7, 6)):
    """Scatter a 2-D embedding, coloured by class when labels are given.

    Parameters
    ----------
    Z : array-like of shape (n_samples, 2)
        Embedding to draw, e.g. the output of ``transform``.
    labels : array-like of shape (n_samples,), default=None
        Class of each point: integers or strings. Up to 20 classes get discrete colours
        and a colour bar naming them; more get a continuous colour scale. Numbers are
        shown in increasing order, a pandas categorical in its categories' order, and
        strings in their order of first appearance.
    categories : sequence of str, default=None
        Names of the integer labels ``0..n-1`` (ignored for string labels, which name
        themselves).
    ax : matplotlib.axes.Axes, default=None
        Axes to draw into; by default a new figure of ``figsize`` inches at 100 dpi.
    filename : str or path-like, default=None
        Where to save the figure (the format follows the extension).
    title : str, default=None
    label_name : str, default="label"
        Title of the colour bar.
    figsize : (float, float), default=(7, 6)

    Returns
    -------
    fig : matplotlib.figure.Figure
    """
    Z = np.asarray(Z)
    if Z.ndim != 2 or Z.shape[1] != 2:
        raise ValueError(f"plot_embedding draws 2-D embeddings; got an array of shape {Z.shape}.")
    if labels is not None and len(labels) != len(Z):
        raise ValueError(f"labels has {len(labels)} entries for {len(Z)} points.")
    fig, ax = _new_axes(ax, figsize)
    # Small, edgeless, rasterized markers keep a million points quick to draw and save.
    style = dict(s=max(0.5, min(10.0, 20000 / max(len(Z), 1))), linewidths=0, rasterized=True)
    if labels is None:
        ax.scatter(Z[:, 0], Z[:, 1], **style)
    else:
        codes, names = _encode_labels(labels, categories)
        n_classes = len(names)
        discrete = n_classes <= _MAX_DISCRETE_CLASSES
        cmap = ("tab10" if n_classes <= 10 else "tab20") if discrete else "viridis"
        points = ax.scatter(Z[:, 0], Z[:, 1], c=codes, cmap=cmap, vmin=-0.5, vmax=n_classes - 0.5, **style)
        if discrete:
            points.set_cmap(points.get_cmap().resampled(n_classes))
            bar = fig.colorbar(points, ax=ax, ticks=np.arange(n_classes))
            bar.ax.set_yticklabels(names)
        else:
            bar = fig.colorbar(points, ax=ax)
        bar.set_label(label_name)
    ax.set_xlabel("component 0")
    ax.set_ylabel("component 1")
    if title:
        ax.set_title(title)
    return _finish(fig, filename)


def square_image_shape(n_features):
    """``(side, side)`` when ``n_features`` is a perfect square (e.g. 784 -> 28x28), else None."""
    side = round(n_features**0.5)
    return (side, side) if side * side == n_features else None


# Without data, the latent grid covers the central part of the prior N(0, I) (99.7% of
# each coordinate's mass).
PRIOR_RANGE = (-3.0, 3.0)


def embedding_range(estimator, X, quantiles=(0.01, 0.99), margin=0.05):
    """A square range that holds the 1st to 99th percentiles of both coordinates of ``X``'s
    embedding, widened by ``margin`` of its width on each side."""
    return _square_range(estimator.transform(X), quantiles, margin)


def _square_range(Z, quantiles=(0.01, 0.99), margin=0.05):
    low, high = np.quantile(Z, quantiles[0], axis=0).min(), np.quantile(Z, quantiles[1], axis=0).max()
    pad = margin * (high - low)
    return float(low - pad), float(high + pad)


def latent_grid(estimator, shape, xy_range=None, grid_size=20, X=None):
    """Decode a regular grid over the 2-D latent plane into one mosaic image.

    Cell ``(row, col)`` of the mosaic decodes the latent point at the centre of the
    corresponding grid cell, with the first latent dimension increasing to the right and
    the second increasing upwards. ``xy_range=None`` covers where ``X`` embeds (see
    :func:`embedding_range`), or :data:`PRIOR_RANGE` without ``X``.

    Returns
    -------
    image : ndarray of shape (grid_size * shape[0], grid_size * shape[1])
    """
    if estimator.n_components != 2:
        raise ValueError(
            f"A latent grid needs a 2-D latent space; this model has n_components={estimator.n_components}."
        )
    height, width = (int(n) for n in shape)
    if height * width != estimator.n_features_in_:
        raise ValueError(
            f"shape {tuple(shape)} has {height * width} pixels, but the model has {estimator.n_features_in_} features."
        )
    low, high = _grid_range(estimator, xy_range, X)
    centres = low + (np.arange(grid_size) + 0.5) * (high - low) / grid_size
    x, y = np.meshgrid(centres, centres[::-1])  # rows from the top: y decreasing
    decoded = estimator.inverse_transform(np.column_stack([x.ravel(), y.ravel()]))
    tiles = decoded.reshape(grid_size, grid_size, height, width)
    return tiles.transpose(0, 2, 1, 3).reshape(grid_size * height, grid_size * width)


def _grid_range(estimator, xy_range, X):
    if xy_range is not None:
        return xy_range
    if X is not None:
        return embedding_range(estimator, X)
    if getattr(estimator, "embedding_", None) is not None:
        return _square_range(estimator.embedding_)
    return PRIOR_RANGE


def plot_latent_grid(estimator, shape, xy_range=None, grid_size=20, *, X=None, clip=None, cmap="Greys_r", ax=None,
                     filename=None, figsize=(8, 8)):
    """Show what a 2-D latent space decodes to: images decoded over a grid of latent points.

    The PyTorch counterpart of the original CompressionVAE's ``visualize_latent_grid``.

    Parameters
    ----------
    estimator : CompressionVAE
        Fitted, with ``n_components=2``, on images flattened to ``prod(shape)`` features.
    shape : (int, int)
        Height and width of one image.
    xy_range : (float, float), default=None
        Range of both latent coordinates. ``None``: where ``X`` embeds (its 1st to 99th
        percentiles); without ``X``, where the training rows embed (``embedding_``), or
        the prior's central part, (-3, 3), for a model that did not keep them.
    grid_size : int, default=20
        Images along each side.
    X : array-like of shape (n_samples, n_features), default=None
        Data whose embedding sets the default range (e.g. the training data).
    clip : (float, float), default=None
        Clip decoded values to this range before drawing (e.g. ``(0, 255)``); by default,
        to the range of ``X`` when it is given, else of the training data
        (``data_range_``), so that the colours span the data's values.
    cmap : str, default="Greys_r"
    ax : matplotlib.axes.Axes, default=None
    filename : str or path-like, default=None
    figsize : (float, float), default=(8, 8)

    Returns
    -------
    fig : matplotlib.figure.Figure
    """
    low, high = _grid_range(estimator, xy_range, X)
    image = latent_grid(estimator, shape, (low, high), grid_size)
    if clip is None and X is not None:
        clip = (float(np.min(X)), float(np.max(X)))
    elif clip is None:
        clip = getattr(estimator, "data_range_", None)
    if clip is not None:
        image = np.clip(image, *clip)
    fig, ax = _new_axes(ax, figsize)
    limits = {} if clip is None else {"vmin": clip[0], "vmax": clip[1]}
    ax.imshow(image, cmap=cmap, extent=(low, high, low, high), interpolation="nearest", **limits)
    ax.set_xlabel("component 0")
    ax.set_ylabel("component 1")
    return _finish(fig, filename)


def plot_history(estimator, *, filename=None, figsize=(8, 6)):
    """Training and validation loss (the negative ELBO, plus the neighbour term when the model
    has one), the validation negative ELBO alone, and the learning rate, against the step.

    Parameters
    ----------
    estimator : CompressionVAE or list of dict
        A fitted estimator, or its ``history_``.
    filename : str or path-like, default=None
    figsize : (float, float), default=(8, 6)

    Returns
    -------
    fig : matplotlib.figure.Figure
    """
    history = getattr(estimator, "history_", estimator)
    if not history:
        raise ValueError("The training history is empty: fit the estimator first.")
    fig = _new_figure(figsize)
    loss_ax, rate_ax = fig.subplots(2, 1, sharex=True, height_ratios=(3, 1))
    steps = [row["step"] for row in history]
    loss_ax.plot(steps, [row["train_loss"] for row in history], label="train loss")
    loss_ax.plot(steps, [row["validation_loss"] for row in history], label="validation loss")
    if all("validation_elbo" in row for row in history):
        loss_ax.plot(steps, [-row["validation_elbo"] for row in history], label="validation negative ELBO")
    loss_ax.set_ylabel("nats per sample")  # the loss adds the neighbour term to the negative ELBO
    loss_ax.legend()
    rate_ax.plot(steps, [row["learning_rate"] for row in history], color="black")
    rate_ax.set_yscale("log")
    rate_ax.set_ylabel("learning rate")
    rate_ax.set_xlabel("step")
    return _finish(fig, filename)


def tensorboard_figures(estimator, X):
    """The figures a fit with ``tensorboard=True`` writes, for a fitted 2-D ``estimator``: the
    embedding of the rows ``X`` and, when the features form a square image, the decoded
    latent grid; none for another number of components."""
    Z = estimator.transform(X)
    if Z.shape[1] != 2:
        return {}
    figures = {"embedding": plot_embedding(Z, title="validation data")}
    shape = square_image_shape(estimator.n_features_in_)
    if shape is not None:
        figures["latent_grid"] = plot_latent_grid(estimator, shape, X=X)
    return figures
