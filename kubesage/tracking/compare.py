"""``kubesage compare``: runs side by side (parameters, final metrics) and their learning curves."""

from __future__ import annotations

import os
import tempfile

from kubesage.runs.record import RunRecord


def comparison(records: list[RunRecord]) -> list[tuple[str, list[str]]]:
    """The rows that compare runs: target and status, the parameters that differ, and every
    final metric (without throughput) as ``step.metric``; one value per run in each row."""
    rows: list[tuple[str, list[str]]] = [
        ("target", [r.target + (" (service)" if r.remote else "") for r in records]),
        ("status", [r.status for r in records])]
    for key in sorted({k for r in records for k in r.parameters}):
        values = [repr(r.parameters.get(key, "")) for r in records]
        if len(set(values)) > 1:
            rows.append((f"param {key}", values))
    keys = sorted({(s, m) for r in records for s, ms in r.metrics.items() for m in ms
                   if "per_s" not in m})
    for step, metric in keys:
        rows.append((f"{step}.{metric}",
                     [_fmt(r.metrics.get(step, {}).get(metric)) for r in records]))
    return rows


def curves(records: list[RunRecord]) -> dict[str, list[tuple[RunRecord, list[list[float]]]]]:
    """Every learning curve (a metric logged with a step; throughput left out), keyed
    ``step.metric``: the runs that have it, each with its ``[[step, value], ...]``."""
    found: dict[str, list[tuple[RunRecord, list[list[float]]]]] = {}
    for r in records:
        for s in r.steps:
            for name, points in sorted(s.series.items()):
                if "per_s" not in name and points:
                    found.setdefault(f"{s.name}.{name}", []).append((r, points))
    return found


def table(records: list[RunRecord]) -> str:
    """Parameters that differ and every final metric (without throughput), one column per run."""
    names = [r.run_id for r in records]
    rows = comparison(records)
    width = max(len(label) for label, _ in rows)
    cols = [max(len(n), *(len(v[i]) for _, v in rows)) for i, n in enumerate(names)]
    lines = [" " * width + "  " + "  ".join(n.ljust(c) for n, c in zip(names, cols, strict=True))]
    for label, values in rows:
        lines.append(label.ljust(width) + "  " + "  ".join(
            v.ljust(c) for v, c in zip(values, cols, strict=True)))
    return "\n".join(lines)


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.4f}"


PLOTS_HINT = "matplotlib is not installed: pip install 'kubesage[plots]' draws the learning curves"


class PlotsNotInstalled(ValueError):
    """matplotlib (the ``plots`` extra) is missing: the table prints, the PNG is not drawn."""


def plot(records: list[RunRecord], path: str) -> list[str]:
    """Write a PNG of every learning curve (one panel per series, one line per run).

    Returns the series drawn; written atomically (temporary file, then rename). Raises
    ``ValueError`` when there is nothing to draw, ``PlotsNotInstalled`` (one) when matplotlib,
    the ``plots`` extra, is not installed.
    """
    found = curves(records)
    series = sorted(found)
    if not series:
        raise ValueError("none of these runs recorded learning curves (metrics logged with a step)")
    try:
        import matplotlib
    except ImportError:
        raise PlotsNotInstalled(PLOTS_HINT) from None

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    differing = [k for k in sorted({k for r in records for k in r.parameters})
                 if len({repr(r.parameters.get(k)) for r in records}) > 1]

    def label(r: RunRecord) -> str:
        shown = " ".join(f"{k}={r.parameters.get(k)}" for k in differing)
        return f"{r.run_id} {shown}".strip() + ("" if r.status == "succeeded" else f" ({r.status})")

    fig, axes = plt.subplots(1, len(series), figsize=(5.5 * len(series), 4.2), squeeze=False)
    for ax, key in zip(axes[0], series, strict=True):
        metric = key.split(".", 1)[1]
        for r, points in found[key]:
            xs, ys = zip(*points, strict=True)
            ax.plot(xs, ys, marker="o", label=label(r))
        ax.set_title(key)
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_ylabel(metric)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.suptitle(" vs ".join(r.pipeline for r in records[:1]) + f": {len(records)} runs")
    fig.tight_layout()
    folder = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(suffix=".png", dir=folder)
    os.close(fd)
    fig.savefig(tmp, dpi=110)
    plt.close(fig)
    os.replace(tmp, path)
    return series
