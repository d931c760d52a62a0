"""`mlbuild exp plot`: a metric against each parameter the experiments vary, one panel per
parameter, as a PNG. The one module that imports matplotlib."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mlbuild.errors import UsageError, did_you_mean
from mlbuild.experiments.show import Table

MAX_PANELS = 12


def _numeric(values: list[Any]) -> bool:
    return all(isinstance(v, int | float) and not isinstance(v, bool) for v in values)


def pick_metric(table: Table, metric: str | None) -> str:
    """The metric to plot: the one asked for, else the first the experiments have."""
    if metric is None:
        if not table.metrics:
            raise UsageError("exp plot: the experiments have no metrics to plot")
        return table.metrics[0]
    if metric not in table.metrics:
        raise UsageError(f"exp plot: no metric '{metric}'{did_you_mean(metric, table.metrics)}")
    return metric


def plot(table: Table, metric: str, out: Path) -> list[str]:
    """Draw *metric* against every varied param into *out*; return the params drawn."""
    import matplotlib

    matplotlib.use("Agg")  # files only: no display, no GUI toolkit
    import matplotlib.pyplot as plt

    rows = [r for r in table.rows if isinstance(r.metrics.get(metric), int | float)]
    params = table.params[:MAX_PANELS]
    if not params:
        raise UsageError("exp plot: the experiments vary no parameter (run a sweep first)")
    fig, axes = plt.subplots(1, len(params), figsize=(4 * len(params), 3.5), squeeze=False)
    for ax, param in zip(axes[0], params, strict=True):
        xs = [r.params.get(param) for r in rows]
        ys = [float(r.metrics[metric]) for r in rows]
        if not _numeric(xs):
            labels = sorted({str(x) for x in xs})
            xs = [labels.index(str(x)) for x in xs]
            ax.set_xticks(range(len(labels)), labels)
        ax.scatter(xs, ys, c=["tab:red" if r.baseline else "tab:blue" for r in rows])
        ax.set_xlabel(param)
        ax.set_ylabel(metric)
        ax.grid(alpha=0.3)
    fig.suptitle(f"{metric} by parameter ({len(rows)} experiments; red: baseline)")
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return params
