"""Plots of the labs. Each function draws one figure, saves it as PNG (when `path` is given; never under
nbgrader validate, see lib.grading.may_write) and returns it; in a notebook the figure is shown inline as
the cell's output.
"""
from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import matplotlib.pyplot as plt
import torch

from .grading import may_write
from .slimming import gammas

if TYPE_CHECKING:
    import torch.nn as nn
    from matplotlib.figure import Figure

    from .train import History


def save_figure(fig: Figure, path: str | Path) -> None:
    """Save `fig` as a PNG at `path` (its folder is created), unless lib.grading.may_write(path) says no."""
    if may_write(path):
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, dpi=100)


def _finish(fig: Figure, path: str | Path | None) -> Figure:
    fig.tight_layout()
    if path is not None:
        save_figure(fig, path)
    return fig


def plot_curves(histories: Mapping[Hashable, History], key: str, ylabel: str | None = None, title: str | None = None,
                path: str | Path | None = None, start: Mapping[Hashable, float] | None = None,
                styles: Mapping[Hashable, dict[str, Any]] | None = None) -> Figure:
    """One line per run: histories is {label: History}, key a per-epoch column such as "val_accuracy".

    start: {label: value before the first epoch}, drawn at epoch 0 (where a fine-tuning began);
    styles: {label: matplotlib line options}, e.g. one colour per seed and a line style per method.
    """
    fig, ax = plt.subplots(figsize=(6, 4))
    start, styles = start or {}, styles or {}
    for label, history in histories.items():
        epochs, values = list(history["epoch"]), list(history[key])
        if label in start:
            epochs, values = [0] + epochs, [start[label]] + values
        ax.plot(epochs, values, marker=".", label=str(label), **styles.get(label, {}))
    ax.set_xlabel("epoch")
    ax.set_ylabel(ylabel or key)
    ax.set_title(title or key)
    ax.grid(alpha=0.3)
    ax.legend()
    return _finish(fig, path)


def plot_gamma_histograms(models: Mapping[Hashable, nn.Module], bins: int = 60, percents: Sequence[float] = (),
                          floor: float = 1e-8, threshold: float | None = None,
                          path: str | Path | None = None) -> Figure:
    """Histogram of all BN |gamma| of each model, side by side on the same axes: models is {label: model}.

    Both axes are logarithmic. The |gamma| axis, because they span many orders of magnitude: a silenced channel
    sits at 1e-6 or below, an active one near 0.5, and a linear axis would show them as one bar at 0 (values
    below `floor` are drawn in the first bar). The count axis, so that a bar of a few channels stays visible
    next to hundreds. For each fraction in `percents` a dashed line marks the |gamma| below which that fraction
    of the model's channels lies (its quantile): about where vggprune's global threshold for that percent
    falls; `threshold` (e.g. the sparsity threshold) is drawn as a dotted black line.
    """
    values = {label: gammas(model).clamp_min(floor) for label, model in models.items()}
    top = max(v.max().item() for v in values.values()) * 1.5
    edges = torch.logspace(torch.log10(torch.tensor(floor)), torch.log10(torch.tensor(top)), bins + 1).numpy()
    fig, axes = plt.subplots(1, len(models), figsize=(4 * len(models), 3.2), squeeze=False, sharex=True)
    for ax, (label, v) in zip(axes[0], values.items()):
        ax.hist(v.numpy(), bins=edges, color="tab:blue")
        ax.set_xscale("log")
        ax.set_yscale("log")
        for percent, color in zip(percents, ("tab:orange", "tab:red", "tab:purple", "tab:green")):
            ax.axvline(torch.quantile(v, percent).item(), color=color, linestyle="--",
                       label=f"{percent:.0%} of channels below")
        if threshold is not None:
            ax.axvline(threshold, color="black", linestyle=":", label=f"sparsity threshold {threshold:g}")
        if percents or threshold is not None:
            ax.legend(fontsize="small")
        ax.set_title(str(label))
        ax.set_xlabel("|gamma| (log scale)")
        ax.set_ylabel("channels (log scale)")
    return _finish(fig, path)


def plot_lr(history: History, path: str | Path | None = None) -> Figure:
    """The learning rate of each epoch (log scale): shows the step schedule."""
    fig, ax = plt.subplots(figsize=(5, 3))
    ax.step(history["epoch"], history["lr"], where="post")
    ax.set_yscale("log")
    ax.set_xlabel("epoch")
    ax.set_ylabel("learning rate")
    ax.set_title("learning-rate schedule")
    return _finish(fig, path)


def plot_accuracy(history: History, title: str = "accuracy", path: str | Path | None = None) -> Figure:
    """Training and validation accuracy (%) of one run per epoch, on one axes."""
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot(history["epoch"], history["train_accuracy"], marker=".", label="train")
    ax.plot(history["epoch"], history["val_accuracy"], marker=".", label="validation")
    ax.set_xlabel("epoch")
    ax.set_ylabel("accuracy (%)")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend()
    return _finish(fig, path)


def plot_frequency_responses(filter_sets: Mapping[Hashable, torch.Tensor], sample_rate: float,
                             path: str | Path | None = None, names: Sequence[str] | None = None) -> Figure:
    """Magnitude responses (dB) of FIR filters, one panel per set: filter_sets is {label: (n, taps) tensor};
    names: one label per filter (the same in every panel), shown in a legend."""
    fig, axes = plt.subplots(1, len(filter_sets), figsize=(5 * len(filter_sets), 3.5), squeeze=False, sharey=True)
    for ax, (label, filters) in zip(axes[0], filter_sets.items()):
        filters = filters.detach().cpu().reshape(len(filters), -1)
        spectrum = torch.fft.rfft(filters, n=4096).abs()
        decibels = 20 * torch.log10(spectrum / spectrum.max(dim=1, keepdim=True).values + 1e-6)
        hz = torch.fft.rfftfreq(4096, d=1 / sample_rate)
        for i, row in enumerate(decibels):
            ax.plot(hz.numpy(), row.numpy(), linewidth=1, color=f"C{i % 10}", label=names[i] if names else None)
        ax.set_ylim(-60, 3)
        ax.set_xlabel("frequency (Hz)")
        ax.set_title(str(label))
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel("gain (dB)")
    if names:
        axes[0][-1].legend(fontsize="small", loc="lower right")
    return _finish(fig, path)


def plot_band_edges(before: Sequence[torch.Tensor], after: Sequence[torch.Tensor],
                    path: str | Path | None = None) -> Figure:
    """Every sinc filter's pass band before and after training, one row per filter, on a log frequency axis.

    before, after: (low, high) cut-offs in Hz as SincConv1d.bands() returns them, each (C, 1).
    """
    fig, ax = plt.subplots(figsize=(7, 4.5))
    before_style: dict[str, Any] = dict(color="0.75", linewidth=5, label="before training")
    after_style: dict[str, Any] = dict(color="C3", linewidth=1.5, label="after training")
    for (low, high), style in ((before, before_style), (after, after_style)):
        rows = torch.arange(len(low))
        ax.hlines(rows, low.detach().cpu().flatten(), high.detach().cpu().flatten(), **style)
    ax.set_xscale("log")
    ax.set_xlabel("frequency (Hz)")
    ax.set_ylabel("sinc filter")
    ax.set_title("pass bands of the sinc filters")
    ax.legend(loc="upper left")
    ax.grid(alpha=0.3)
    return _finish(fig, path)


def plot_heatmap(values: Sequence[Sequence[float]], row_labels: Sequence[object], col_labels: Sequence[object],
                 xlabel: str | None = None, ylabel: str | None = None, title: str | None = None, fmt: str = "{:.1f}",
                 path: str | Path | None = None, center: float | None = None,
                 colorbar_label: str | None = None) -> Figure:
    """A grid of numbers as coloured cells with the value written in each: values[i][j] is row i, column j.

    center: None colours from the smallest to the largest value (viridis). A number (e.g. 0 for differences
    from a baseline) uses a diverging map symmetric about it: equal distances above and below get equally
    strong colours, red above, blue below, white at `center`, so the sign of each cell reads at a glance.
    """
    import numpy as np
    grid = np.asarray(values, dtype=float)
    fig, ax = plt.subplots(figsize=(max(5.5, 1.2 * len(col_labels) + 2.2), 0.8 * len(row_labels) + 1.6))
    if center is None:
        image = ax.imshow(grid, cmap="viridis", aspect="auto")
        middle = (np.nanmin(grid) + np.nanmax(grid)) / 2

        def dark(value: float) -> bool:
            return value <= middle                       # viridis is dark at its low end
    else:
        reach = max(float(np.nanmax(np.abs(grid - center))), 1e-9)
        image = ax.imshow(grid, cmap="RdBu_r", aspect="auto", vmin=center - reach, vmax=center + reach)

        def dark(value: float) -> bool:
            return abs(value - center) > 0.6 * reach     # strong red and blue are dark
    ax.set_xticks(range(len(col_labels)), [str(c) for c in col_labels])
    ax.set_yticks(range(len(row_labels)), [str(r) for r in row_labels])
    for i in range(grid.shape[0]):
        for j in range(grid.shape[1]):
            ax.text(j, i, fmt.format(grid[i, j]), ha="center", va="center",
                    color="white" if dark(grid[i, j]) else "black")   # readable on dark and light cells
    ax.set_xlabel(xlabel or "")
    ax.set_ylabel(ylabel or "")
    ax.set_title(title or "")
    fig.colorbar(image, ax=ax, label=colorbar_label or "")
    return _finish(fig, path)


def plot_weight_levels(weights: torch.Tensor, level_sets: Mapping[Hashable, torch.Tensor | Sequence[float]],
                       bins: int = 80, title: str = "weights and their quantization levels",
                       path: str | Path | None = None) -> Figure:
    """One panel per range choice: the histogram of `weights` with that choice's quantization levels over it.

    weights     a tensor of any shape (one layer's weights)
    level_sets  {label: 1-d tensor of the levels, ascending}, e.g. {"max|w|": ..., "clipped at 1.71 std": ...}
    Each level is a vertical line labelled with the share of the weights that round to it (the nearest level;
    weights beyond the end levels are clipped to them). Returns the figure.
    """
    w = weights.detach().flatten().float().cpu()
    fig, axes = plt.subplots(1, len(level_sets), figsize=(5.5 * len(level_sets), 3.6), sharey=True, squeeze=False)
    for ax, (label, levels) in zip(axes[0], level_sets.items()):
        levels = torch.as_tensor(levels, dtype=torch.float32).flatten().cpu()
        nearest = (w[:, None] - levels[None, :]).abs().argmin(1)
        share = torch.bincount(nearest, minlength=len(levels)).float() / max(len(w), 1)
        ax.hist(w.numpy(), bins=bins, color="lightgray", edgecolor="gray")
        top = ax.get_ylim()[1]
        for level, fraction in zip(levels.tolist(), share.tolist()):
            ax.axvline(level, color="tab:red", linewidth=1)
            ax.text(level, top * 0.97, f"{fraction:.0%}", color="tab:red", ha="center", va="top", fontsize=8,
                    backgroundcolor="white")
        ax.set_title(f"{label}: {len(levels)} levels")
        ax.set_xlabel("weight")
    axes[0][0].set_ylabel("weights per bin")
    fig.suptitle(title)
    return _finish(fig, path)


def plot_sweep(series: Mapping[Hashable, Mapping[Any, float]], xlabel: str, ylabel: str, title: str | None = None,
               path: str | Path | None = None, reference: tuple[str, float] | None = None) -> Figure:
    """One line per series: {label: {x: y}}, e.g. {"max|w|": {8: 84.1, 4: 80.2, ...}}; x values as categories,
    in the order of the first series. reference: (label, y) drawn as a horizontal line, e.g. the float model."""
    fig, ax = plt.subplots(figsize=(6, 4))
    xs = list(next(iter(series.values())))
    if reference is not None:
        ax.axhline(reference[1], color="gray", linestyle="--", label=reference[0])
    for label, points in series.items():
        ax.plot(range(len(xs)), [points[x] for x in xs], marker="o", label=str(label))
    ax.set_xticks(range(len(xs)), [str(x) for x in xs])
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title or "")
    ax.grid(alpha=0.3)
    ax.legend()
    return _finish(fig, path)


def plot_tradeoff(points: Sequence[tuple[str, float, float]], xlabel: str, ylabel: str, title: str | None = None,
                  path: str | Path | None = None) -> Figure:
    """One point per run, joined in order and labelled: points is [(label, x, y)], e.g. [("s = 0.005", 0.37,
    91.5), ...] for accuracy against sparsity."""
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot([x for _, x, _ in points], [y for _, _, y in points], marker="o", color="tab:blue")
    for label, x, y in points:
        ax.annotate(label, (x, y), textcoords="offset points", xytext=(4, 4), fontsize=8)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title or "")
    ax.grid(alpha=0.3)
    return _finish(fig, path)
