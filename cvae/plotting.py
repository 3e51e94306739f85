"""Figures of embeddings (needs the ``plot`` extra: matplotlib)."""

import numpy as np

__all__ = ["plot_embedding"]


def _pyplot():
    try:
        import matplotlib

        matplotlib.use("Agg", force=False)
        import matplotlib.pyplot as plt
    except ImportError as exc:
        raise ImportError("Plotting needs matplotlib: pip install 'cvae[plot]'.") from exc
    return plt


def plot_embedding(Z, labels=None, categories=None, filename=None, title=None):
    """Scatter a 2-D embedding, coloured by integer labels when given.

    Parameters
    ----------
    Z : array-like of shape (n_samples, 2)
        Embedding to draw.
    labels : array-like of shape (n_samples,), default=None
        Integer class of each point; adds a colour bar.
    categories : sequence of str, default=None
        Names for the label values ``0..n-1`` on the colour bar.
    filename : str or path-like, default=None
        If given, the figure is saved there (PNG, PDF... from the extension).
    title : str, default=None

    Returns
    -------
    fig : matplotlib.figure.Figure
    """
    plt = _pyplot()
    Z = np.asarray(Z)
    if Z.ndim != 2 or Z.shape[1] != 2:
        raise ValueError(f"plot_embedding draws 2-D embeddings; got an array of shape {Z.shape}.")
    fig, ax = plt.subplots(figsize=(7, 6))
    size = max(1.0, min(10.0, 20000 / max(len(Z), 1)))
    if labels is None:
        ax.scatter(Z[:, 0], Z[:, 1], s=size, rasterized=True)
    else:
        labels = np.asarray(labels)
        values = np.unique(labels)
        cmap = plt.get_cmap("tab10" if len(values) <= 10 else "viridis", len(values))
        points = ax.scatter(Z[:, 0], Z[:, 1], s=size, c=labels, cmap=cmap, vmin=values.min() - 0.5,
                            vmax=values.max() + 0.5, rasterized=True)
        bar = fig.colorbar(points, ax=ax, ticks=values)
        if categories is not None:
            bar.ax.set_yticklabels([categories[int(v)] for v in values])
    ax.set_xlabel("component 0")
    ax.set_ylabel("component 1")
    if title:
        ax.set_title(title)
    fig.tight_layout()
    if filename is not None:
        fig.savefig(filename, dpi=100)
    return fig
