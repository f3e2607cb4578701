"""Plots of fields on the sphere (matplotlib, imported lazily)."""

from __future__ import annotations

import numpy as np

from keras_sphere.sphere.grid import Grid

__all__ = [
    "plot_forecast_maps",
    "plot_learning_curves",
    "plot_mollweide",
    "plot_rmse_by_lead",
]


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


def _save(figure, path) -> None:
    import matplotlib.pyplot as plt

    figure.tight_layout()
    if path is not None:
        figure.savefig(path, dpi=110)
        plt.close(figure)


def plot_rmse_by_lead(scores, panels, path=None):
    """RMSE against lead time of each forecast in `scores`, one panel per field.

    Args:
        scores: the output of `keras_sphere.weather.evaluate` (dims forecast,
            prediction_timedelta, [level]).
        panels: (variable, level or None, units) per panel, e.g.
            ``[("geopotential", 500, "m2 s-2"), ("temperature", 850, "K")]``.
        path: image file to write (PNG, figure closed); None keeps the figure.

    Returns:
        The matplotlib figure.
    """
    import matplotlib

    if path is not None:
        matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    leads = scores["prediction_timedelta"].values / np.timedelta64(1, "D")
    figure, axes = plt.subplots(1, len(panels), figsize=(5 * len(panels), 3.6))
    for ax, (variable, level, units) in zip(np.atleast_1d(axes), panels, strict=True):
        field = scores[variable]
        if level is not None:
            field = field.sel(level=level)
        for forecast in field["forecast"].values:
            ax.plot(leads, field.sel(forecast=forecast), marker=".", label=forecast)
        name = variable if level is None else f"{variable} {level} hPa"
        ax.set(xlabel="lead time (days)", ylabel=f"RMSE ({units})", title=name)
        ax.grid(alpha=0.3)
        ax.legend()
    _save(figure, path)
    return figure


def plot_forecast_maps(
    forecast, truth, variable: str, level=None, lead=None, units=None, path=None
):
    """Forecast, truth and error maps of one field at one lead (Mollweide).

    Args:
        forecast: the output of `keras_sphere.weather.forecast`; its first
            initialisation time is drawn.
        truth: WB2-layout dataset holding the valid time.
        variable: e.g. "geopotential".
        level: pressure level (hPa) for fields with levels.
        lead: the lead time drawn (a timedelta64); default the forecast's last.
        units: colour-bar label.
        path: image file to write (PNG, figure closed); None keeps the figure.

    Returns:
        The matplotlib figure.
    """
    import matplotlib

    if path is not None:
        matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    first = forecast[variable].isel(time=0)
    actual = truth[variable]
    if level is not None:
        first, actual = first.sel(level=level), actual.sel(level=level)
    if lead is None:
        lead = first["prediction_timedelta"].values[-1]
    valid = forecast["time"].values[0] + lead
    predicted = first.sel(prediction_timedelta=lead).values
    actual = actual.sel(time=valid).values
    name = variable if level is None else f"{variable} {level} hPa"
    days = lead / np.timedelta64(1, "D")
    figure = plt.figure(figsize=(13, 3.6))
    for index, (title, field, symmetric) in enumerate(
        [
            (f"forecast at {days:g} days", predicted, False),
            ("truth", actual, False),
            ("forecast - truth", predicted - actual, True),
        ]
    ):
        ax = figure.add_subplot(1, 3, index + 1, projection="mollweide")
        plot_mollweide(
            field,
            ax=ax,
            title=f"{name}: {title}",
            units=units,
            symmetric=symmetric,
            cmap="RdBu_r" if symmetric else "viridis",
        )
    _save(figure, path)
    return figure
