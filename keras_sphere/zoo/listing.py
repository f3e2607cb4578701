"""`PresetListing`: the records of `list_presets`, shown as a table.

A dict (name -> record) like any other, so scripts index it and iterate over it;
its repr is a table, so ``zoo.list_presets()`` at a prompt or as the last line of a
notebook cell shows one line per preset, and ``print(zoo.list_presets())`` does the
same in a script.
"""

from __future__ import annotations

from collections.abc import Mapping

__all__ = ["PresetListing"]

COLUMNS = ("name", "task", "grid", "inputs", "size", "headline metric", "status")
# Longest cell text before it is cut with "...".
_MAX_CELL = 40


class PresetListing(dict):
    """Preset name -> record (task, description, parameters, grid, inputs, ...).

    The records are those `keras_sphere.zoo.list_presets` documents; the repr is a
    table with the columns of `COLUMNS`. A record without metadata (a built-in
    preset not trained yet) carries a ``status`` saying how to train it.
    """

    def rows(self) -> list[tuple[str, ...]]:
        """One tuple of cell texts per preset, in the order of `COLUMNS`."""
        return [_row(name, record) for name, record in self.items()]

    def table(self) -> str:
        """The plain-text table of the presets, with a line on what to do next."""
        if not self:
            return "No presets."
        rows = [COLUMNS, *self.rows()]
        widths = [max(len(row[i]) for row in rows) for i in range(len(COLUMNS))]

        def line(cells):
            padded = [c.ljust(width) for c, width in zip(cells, widths, strict=True)]
            return "  ".join(padded).rstrip()

        lines = [line(COLUMNS), line(["-" * width for width in widths])]
        lines += [line(row) for row in rows[1:]]
        lines += [
            "",
            "zoo.card(name) prints a preset's model card; zoo.load(name) loads it.",
        ]
        return "\n".join(lines)

    def __repr__(self) -> str:
        return self.table()

    def _repr_pretty_(self, printer, cycle) -> None:  # IPython and Jupyter
        printer.text(self.table())


def _row(name: str, record: Mapping) -> tuple[str, ...]:
    parameters = record.get("parameters")
    size = f"{parameters:,} params" if isinstance(parameters, int) else "-"
    status = record.get("status", "trained")
    return tuple(
        _cut(cell)
        for cell in (
            name,
            str(record.get("task", "-")),
            _grid(record.get("grid")),
            _inputs(record.get("inputs")),
            size,
            _headline(record.get("metrics"), record.get("headline_metric")),
        )
    ) + (status,)


def _cut(text: str) -> str:
    return text if len(text) <= _MAX_CELL else text[: _MAX_CELL - 3] + "..."


def _grid(grid) -> str:
    if isinstance(grid, Mapping) and {"n_lat", "n_lon"} <= set(grid):
        return f"{grid['n_lat']} x {grid['n_lon']}"
    if isinstance(grid, list | tuple) and len(grid) == 2:
        return f"{grid[0]} x {grid[1]}"
    return "-" if grid is None else str(grid)


def _inputs(inputs) -> str:
    if isinstance(inputs, Mapping):
        parts = []
        for key, spec in inputs.items():
            units = spec.get("units") if isinstance(spec, Mapping) else None
            parts.append(f"{key} ({units})" if units else str(key))
        return ", ".join(parts) or "-"
    if isinstance(inputs, list | tuple):
        return ", ".join(str(item) for item in inputs) or "-"
    return "-" if inputs is None else str(inputs)


def _headline(metrics, chosen: str | None = None) -> str:
    """The metric named by `chosen` (the record's headline_metric), else the first."""
    if not isinstance(metrics, Mapping) or not metrics:
        return "-"
    key = chosen if chosen in metrics else next(iter(metrics))
    return f"{key} {_value(metrics[key])}"


def _value(value) -> str:
    if isinstance(value, bool) or not isinstance(value, int | float | Mapping):
        return str(value)
    if isinstance(value, int | float):
        return f"{value:.4g}"
    if "mean" in value:
        spread = f" ± {value['std']:.2g}" if "std" in value else ""
        return f"{value['mean']:.4g}{spread}"
    if value:  # nested, e.g. per target: the first entry
        key = next(iter(value))
        return f"{key} {_value(value[key])}"
    return "-"
