"""Plots of fields on the sphere (matplotlib, imported lazily)."""

from __future__ import annotations

import numpy as np

from keras_sphere.sphere.grid import Grid

__all__ = ["plot_learning_curves", "plot_mollweide"]


def plot_mollweide(
    field,
    ax=None,
    title: str | None = None,
    units: str | None = None,
    cmap: str = "RdBu_r",
    display_pixels: int = 512,
    symmetric: bool = True,
):
    """Draw a real field on its equiangular grid in the Mollweide projection.

    Args:
        field: (n_lat, n_lon) real values, row 0 at the north pole, column 0 at
            phi = 0 (east longitude increases with the column).
        ax: a matplotlib axes with ``projection="mollweide"``; default a new figure.
        title: axes title.
        units: colour-bar label.
        cmap: colour map.
        display_pixels: rows and columns are strided down to at most this many for
            drawing only (a 2048 x 2048 map has more samples than a figure has
            pixels); the data are not changed.
        symmetric: centre the colour scale on zero.

    Returns:
        The axes.
    """
    import matplotlib.pyplot as plt

    field = np.asarray(field, np.float64)
    if field.ndim != 2:
        raise ValueError(
            f"plot_mollweide draws one (n_lat, n_lon) field. Received shape "
            f"{field.shape}; select a map and channel first."
        )
    grid = Grid(*field.shape)
    if ax is None:
        figure = plt.figure(figsize=(8, 4.5))
        ax = figure.add_subplot(projection="mollweide")
    row_step = max(1, int(np.ceil(grid.n_lat / display_pixels)))
    col_step = max(1, int(np.ceil(grid.n_lon / display_pixels)))
    latitude = np.radians(90.0 - np.degrees(grid.theta))[::row_step]
    # Mollweide axes span longitude -pi .. pi: shift phi in [pi, 2 pi) down by 2 pi.
    longitude = np.where(grid.phi >= np.pi, grid.phi - 2 * np.pi, grid.phi)[::col_step]
    order = np.argsort(longitude)
    values = field[::row_step, ::col_step][:, order]
    limit = np.nanmax(np.abs(values)) if symmetric else None
    mesh = ax.pcolormesh(
        longitude[order],
        latitude,
        values,
        cmap=cmap,
        shading="nearest",
        vmin=-limit if symmetric else None,
        vmax=limit,
        rasterized=True,
    )
    ax.set_xticklabels([])
    ax.grid(alpha=0.3)
    if title:
        ax.set_title(title, fontsize=10)
    colorbar = ax.figure.colorbar(
        mesh, ax=ax, orientation="horizontal", shrink=0.6, pad=0.05
    )
    if units:
        colorbar.set_label(units)
    return ax


def plot_learning_curves(history, path, metrics=("loss", "val_loss")) -> None:
    """Save the learning curve of a run: `metrics` against epochs, log scale.

    Args:
        history: rows (dicts with "epoch" and the logs), as `fit_run` writes them.
        path: image file to write (PNG).
        metrics: the logs to draw; missing ones are skipped.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(6, 4))
    epochs = [row["epoch"] for row in history]
    for name in metrics:
        values = [row.get(name, np.nan) for row in history]
        if np.isfinite(values).any():
            axes.plot(epochs, values, marker=".", label=name)
    axes.set_xlabel("epoch")
    axes.set_yscale("log")
    axes.grid(True, which="both", alpha=0.3)
    axes.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)
