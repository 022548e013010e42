"""Figures of the evaluation, drawn with matplotlib's Agg backend (no display needed).

- :func:`plot_confusion`: the paper's Fig. 2/3 style, class names on both axes, each row
  normalised to the share of its true class, with the counts beside the shares.
- :func:`plot_multilabel_confusion`: one 2x2 matrix per label (multi-label datasets).
- :func:`plot_embedding`: t-SNE (scikit-learn) of representations, coloured by label.
- :func:`plot_scatter`: predictions against targets, one panel per continuous target
  (valence, arousal), with the identity line and the split's CCC.
- :func:`plot_study`: grouped bars, one group per method, one bar per metric, the paper's
  values as ticks.
- :func:`evaluation_figures`: the set one evaluation writes.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only; must precede pyplot's import  # noqa: E402

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from heads.metrics import ccc, pcc  # noqa: E402

log = logging.getLogger(__name__)

#: t-SNE's default perplexity; smaller sets get (n - 1) / 3 (scikit-learn needs perplexity < n).
PERPLEXITY = 30.0
MIN_TSNE_POINTS = 4


def _save(fig: Figure, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120, bbox_inches="tight")
    plt.close(fig)
    return path


#: Fewer test clips than this make a figure's numbers noisy enough to say so in its title.
SMALL_SAMPLE = 100


def caveats(random_weights: Sequence[str] = (), *, preset: str | None = None,
            small: str | None = None) -> str:
    """One line of what a figure's reader must know once it is on a slide: which backbone
    weights were random, the preset (``quick``: cpu-sized, few epochs) and a small sample.
    Empty when there is nothing to say.

    Args:
        random_weights: the store keys whose backbones had random weights.
        preset: the preset the heads were trained with (None: the defaults).
        small: a short note on the sample's size (``n=2 classifiers, 28 test clips``).
    """
    parts = []
    if random_weights:
        parts.append(f"RANDOM backbone weights ({', '.join(sorted(random_weights))})")
    if preset:
        parts.append(f"{preset} preset")
    if small:
        parts.append(small)
    text = "; ".join(parts)
    if random_weights or preset:
        text += ": shows the pipeline runs, not what methods achieve"
    return text


def with_caveats(title: str, note: str) -> str:
    """``title`` with the :func:`caveats` line below it (unchanged without one)."""
    return f"{title}\n{note}" if note else title


def row_normalised(counts: np.ndarray) -> np.ndarray:
    """Each row divided by its sum (rows without samples stay 0): [C, C] -> [C, C]."""
    counts = np.asarray(counts, dtype=np.float64)
    sums = counts.sum(axis=1, keepdims=True)
    return np.divide(counts, sums, out=np.zeros_like(counts), where=sums > 0)


def plot_confusion(counts: Sequence[Sequence[int]], label_names: Sequence[str], path: Path, *,
                   title: str = "") -> Path:
    """Write a row-normalised confusion matrix with counts.

    Args:
        counts: [C, C] counts, rows = truth, columns = prediction.
        label_names: the C class names, in index order.
        path: the PNG to write.
        title: the figure title.
    """
    grid = np.asarray(counts, dtype=np.int64)
    shares = row_normalised(grid)
    size = max(4.0, 0.8 * len(label_names) + 2)
    fig, ax = plt.subplots(figsize=(size, size * 0.85))
    image = ax.imshow(shares, cmap="Blues", vmin=0.0, vmax=1.0)
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04, label="share of the true class")
    ticks = np.arange(len(label_names))
    ax.set_xticks(ticks, labels=label_names, rotation=45, ha="right")
    ax.set_yticks(ticks, labels=label_names)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    for i in range(len(label_names)):
        for j in range(len(label_names)):
            ax.text(j, i, f"{shares[i, j]:.2f}\n({grid[i, j]})", ha="center", va="center",
                    fontsize=8, color="white" if shares[i, j] > 0.5 else "black")
    ax.set_title(title)
    return _save(fig, path)


def plot_multilabel_confusion(matrices: Sequence[Sequence[Sequence[int]]],
                              label_names: Sequence[str], path: Path, *,
                              title: str = "") -> Path:
    """Write one row-normalised 2x2 matrix (``[[TN, FP], [FN, TP]]``) per label: [L, 2, 2]."""
    grids = np.asarray(matrices, dtype=np.int64)
    cols = min(3, len(label_names))
    rows = int(np.ceil(len(label_names) / cols))
    fig, axes = plt.subplots(rows, cols, figsize=(3.2 * cols, 3.0 * rows), squeeze=False)
    for k, ax in enumerate(axes.flat):
        if k >= len(label_names):
            ax.axis("off")
            continue
        shares = row_normalised(grids[k])
        ax.imshow(shares, cmap="Blues", vmin=0.0, vmax=1.0)
        ax.set_xticks([0, 1], labels=["no", "yes"])
        ax.set_yticks([0, 1], labels=["no", "yes"])
        ax.set_title(label_names[k])
        for i in range(2):
            for j in range(2):
                ax.text(j, i, f"{shares[i, j]:.2f}\n({grids[k, i, j]})", ha="center",
                        va="center", fontsize=8,
                        color="white" if shares[i, j] > 0.5 else "black")
    fig.supxlabel("predicted")
    fig.supylabel("true")
    fig.suptitle(title)
    return _save(fig, path)


def tsne_perplexity(n: int) -> float:
    """30, or (n - 1) / 3 for small sets (scikit-learn requires perplexity < n)."""
    return float(min(PERPLEXITY, max(1.0, (n - 1) / 3)))


def plot_embedding(features: np.ndarray, labels: Sequence[str], path: Path, *, seed: int = 0,
                   title: str = "") -> Path | None:
    """Write a t-SNE map of ``features`` [n, F], one colour per label string.

    Features are reduced to at most 50 dimensions with PCA first (the usual t-SNE practice; it
    makes t-SNE on [n, 12288] representations fast).

    Returns:
        the path, or None when there are fewer than 4 points (nothing meaningful to map).
    """
    from sklearn.decomposition import PCA
    from sklearn.manifold import TSNE

    features = np.asarray(features, dtype=np.float64)
    n = len(features)
    if n < MIN_TSNE_POINTS:
        log.info("%s: %d points, too few for a t-SNE map; not drawn", path.name, n)
        return None
    dims = min(50, n, features.shape[1])
    if features.shape[1] > dims:
        features = PCA(n_components=dims, random_state=seed).fit_transform(features)
    xy = TSNE(n_components=2, perplexity=tsne_perplexity(n), init="pca", random_state=seed,
              learning_rate="auto").fit_transform(features)
    fig, ax = plt.subplots(figsize=(6.5, 5.5))
    names = list(dict.fromkeys(sorted(labels)))
    cmap = plt.get_cmap("tab10" if len(names) <= 10 else "tab20")
    labels_arr = np.asarray(labels)
    for k, name in enumerate(names):
        hit = labels_arr == name
        ax.scatter(xy[hit, 0], xy[hit, 1], s=10, color=cmap(k % cmap.N), label=name, alpha=0.8)
    ax.set_xticks([])
    ax.set_yticks([])
    ax.legend(markerscale=2, fontsize=8, loc="best")
    ax.set_title(title or f"t-SNE, perplexity {tsne_perplexity(n):.1f}, n = {n}")
    return _save(fig, path)


def plot_scatter(pred: np.ndarray, target: np.ndarray, target_names: Sequence[str], path: Path,
                 *, title: str = "", max_points: int = 5000, seed: int = 0) -> Path:
    """Write predictions against targets, one panel per target: [n, T] each.

    Every panel has the identity line (a perfect regressor's points lie on it), the axes at 0
    (points off the diagonal quadrants have the wrong sign) and the split's CCC and PCC. More
    than ``max_points`` points are thinned to a seeded random subset (the statistics use all).
    """
    pred, target = np.asarray(pred, dtype=np.float64), np.asarray(target, dtype=np.float64)
    if pred.shape != target.shape or pred.ndim != 2 or pred.shape[1] != len(target_names):
        raise ValueError(f"plot_scatter: pred {pred.shape} and target {target.shape} must be "
                         f"[n, {len(target_names)}]")
    show = np.arange(len(pred))
    if len(show) > max_points:
        show = np.sort(np.random.default_rng(seed).choice(len(pred), max_points, replace=False))
    cols = len(target_names)
    fig, axes = plt.subplots(1, cols, figsize=(4.6 * cols, 4.2), squeeze=False)
    for k, ax in enumerate(axes.flat):
        t, p = target[:, k], pred[:, k]
        lim = float(max(1.0, np.abs(t).max(initial=0), np.abs(p).max(initial=0))) * 1.05
        ax.scatter(t[show], p[show], s=8, alpha=0.6)
        ax.plot([-lim, lim], [-lim, lim], color="black", linewidth=0.8)
        ax.axhline(0, color="grey", linewidth=0.5)
        ax.axvline(0, color="grey", linewidth=0.5)
        ax.set_xlim(-lim, lim)
        ax.set_ylim(-lim, lim)
        ax.set_aspect("equal")
        ax.set_xlabel(f"{target_names[k]}, target")
        ax.set_ylabel(f"{target_names[k]}, predicted")
        ax.set_title(f"{target_names[k]}: CCC {ccc(p, t):.3f}, PCC {pcc(p, t):.3f}, "
                     f"n = {len(t)}", fontsize=9)
    fig.suptitle(title)
    fig.tight_layout()
    return _save(fig, path)


def plot_study(rows: Sequence[Mapping[str, float]], methods: Sequence[str],
               metrics: Mapping[str, str], path: Path, *, title: str = "",
               paper: Sequence[Mapping[str, float]] | None = None,
               groups: Sequence[int] = ()) -> Path:
    """Write grouped bars: one group per method, one bar per metric (values in percent).

    Args:
        rows: per method, metric key -> our value (NaN or missing: no bar).
        methods: the group labels, same order as ``rows``.
        metrics: metric key -> legend label, in bar order.
        path: the PNG to write.
        title: the figure title.
        paper: per method, metric key -> the paper's value, drawn as a black tick across the
            bar (NaN or missing: none), so the distance to the paper shows at a glance.
        groups: the indices of methods that start a new group (a dashed line before each).
    """
    width = 0.8 / max(1, len(metrics))
    x = np.arange(len(methods))
    fig, ax = plt.subplots(figsize=(max(6.0, 0.9 * len(methods) + 2), 4.8))
    for k, (key, label) in enumerate(metrics.items()):
        at = x + (k - (len(metrics) - 1) / 2) * width
        ax.bar(at, [float(r.get(key, np.nan)) for r in rows], width, label=label)
        if paper is not None:
            ticks = [float(p.get(key, np.nan)) for p in paper]
            ax.hlines(ticks, at - width / 2, at + width / 2, colors="black", linewidth=1.5,
                      label="paper" if k == 0 else "_paper")  # "_": not in the legend
    for start in groups:
        ax.axvline(start - 0.5, color="grey", linestyle="--", linewidth=0.8)
    ax.set_xticks(x, labels=methods, rotation=35, ha="right")
    ax.set_ylabel("test, %")
    ax.set_ylim(0, 100)
    ax.grid(axis="y", alpha=0.3)
    # above the axes: bars reach 100 % and would hide a legend inside
    ax.legend(ncol=len(metrics) + (paper is not None), fontsize=8, loc="lower center",
              bbox_to_anchor=(0.5, 1.0), frameon=False)
    ax.set_title(title, pad=24)
    return _save(fig, path)


def evaluation_figures(out: Path, *, confusions: Mapping[str, Sequence],
                       label_names: Sequence[str], multilabel: bool,
                       test: tuple[np.ndarray, np.ndarray] | None, what: str, seed: int,
                       max_points: int, test_labels: Sequence[str] | None = None,
                       scatter: Mapping[str, tuple[np.ndarray, np.ndarray]] | None = None,
                       note: str = "") -> dict[str, object]:
    """The figures of one evaluation: ``confusion_<split>.png`` per split, with test data
    ``embedding_test.png`` and, for continuous targets, ``scatter_<split>.png`` per split.

    Args:
        out: the evaluation folder.
        confusions: split -> [C, C] (or [L, 2, 2] multi-label) counts.
        label_names: class names in index order.
        multilabel: per-label 2x2 matrices instead of one C x C matrix.
        test: the test split's fused representations [n, F] and targets ([n] or [n, L]).
        what: the titles' prefix (protocol and modalities).
        seed: seeds the subset and t-SNE.
        max_points: at most this many test points in the map (a seeded random subset).
        test_labels: the map's colour key per test row (default: from the targets by
            :func:`label_strings`).
        scatter: split -> predictions and targets [n, T] (continuous targets; ``label_names``
            then names the targets' signs).
        note: the :func:`caveats` line under every title.

    Returns:
        the file names written: ``{"confusion": {split: name}, "embedding": name or None}``
        and, with ``scatter``, ``{"scatter": {split: name}}``.
    """
    files: dict[str, object] = {"confusion": {}}
    draw = plot_multilabel_confusion if multilabel else plot_confusion
    for split, counts in confusions.items():
        path = draw(counts, label_names, out / f"confusion_{split}.png",
                    title=with_caveats(f"{what}, {split}", note))
        files["confusion"][split] = path.name  # type: ignore[index]
    if scatter:
        names = [n.removesuffix(" > 0") for n in label_names]
        files["scatter"] = {split: plot_scatter(p, t, names, out / f"scatter_{split}.png",
                                                title=with_caveats(f"{what}, {split}", note),
                                                seed=seed,
                                                max_points=max_points).name
                            for split, (p, t) in scatter.items()}
    if test is not None:
        features, targets = test
        labels = (list(test_labels) if test_labels is not None
                  else label_strings(targets, label_names))
        if len(features) > max_points:
            pick = np.sort(np.random.default_rng(seed).choice(len(features), max_points,
                                                              replace=False))
            features, labels = features[pick], [labels[i] for i in pick]
        drawn = plot_embedding(features, labels, out / "embedding_test.png", seed=seed,
                               title=with_caveats(f"{what}, test representations (t-SNE)",
                                                  note))
        files["embedding"] = drawn.name if drawn is not None else None
    return files


def sign_strings(targets: np.ndarray, names: Sequence[str]) -> list[str]:
    """Colour keys of continuous targets: the signs, ``valence+ arousal-`` (the quadrant)."""
    return [" ".join(f"{n}{'+' if v > 0 else '-'}" for n, v in zip(names, row, strict=True))
            for row in np.asarray(targets)]


def label_strings(targets: np.ndarray, names: Sequence[str]) -> list[str]:
    """Colour keys: class names; multi-label rows: the one positive label, ``multiple`` or
    ``none``."""
    if targets.ndim == 1:
        return [names[int(t)] for t in targets]
    out = []
    for row in targets:
        hits = np.flatnonzero(row > 0)
        out.append(names[int(hits[0])] if len(hits) == 1 else "multiple" if len(hits) else
                   "none")
    return out
