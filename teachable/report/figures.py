"""Paper figures (matplotlib, Agg): one function per figure, each writing `<name>.png` (150 dpi) and
`<name>.pdf` at a fixed size in inches, so a figure reads at print size. Colour-blind-safe:
Okabe-Ito for categories, cividis for a sequential value, RdBu centred on 0 for deltas. Deltas are
drawn in percentage points (pp)."""

from __future__ import annotations

import logging
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.colors import TwoSlopeNorm  # noqa: E402
from PIL import Image  # noqa: E402
from scipy.stats import t as student_t  # noqa: E402

from teachable.gates.cpt import fisher_interval  # noqa: E402
from teachable.report import paper_tables  # noqa: E402

# PDF font subsetting logs every table at INFO
logging.getLogger("fontTools").setLevel(logging.WARNING)
DPI = 150
# as stages/quadrants.py
QUADRANT_COLORS = dict(zip(paper_tables.SHORT, ("#0072B2", "#E69F00", "#999999", "#009E73")))
QUADRANT_NAMES = {
    "Q1": "Q1 high U, high L",
    "Q2": "Q2 high U, low L",
    "Q3": "Q3 low U, low L",
    "Q4": "Q4 low U, high L",
}
METHOD_STYLE = {
    "predictor": ("#0072B2", "o", "-"),
    "entropy": ("#E69F00", "s", "-"),
    "random": ("#999999", "^", "-"),
    "oracle": ("#000000", "D", "--"),
}
FORMAT_COLORS = {
    "demo": "#0072B2",
    "hint": "#E69F00",
    "contrast": "#009E73",
    "baseline": "#CC79A7",
    "control": "#999999",
    "recovery": "#D55E00",
    "selection": "#56B4E9",
    "base": "#000000",
}
QUADRANT_MARKERS = {"Q1": "o", "Q2": "s", "Q3": "^", "Q4": "D"}

plt.rcParams.update(
    {
        "font.size": 9,
        "axes.titlesize": 9.5,
        "axes.labelsize": 9,
        "legend.fontsize": 7.5,
        "xtick.labelsize": 8,
        "ytick.labelsize": 8,
        "figure.dpi": DPI,
        "savefig.dpi": DPI,
        "pdf.fonttype": 42,
    }
)

SIZES = {  # inches (width, height); the tests check PNG size = inches x DPI
    "quadrant_distribution": (5.0, 3.7),
    "h1_teachability_landscape": (5.5, 4.2),
    "h2_cpt_validation": (8.0, 4.0),
    "h3_supervision_heatmap": (5.0, 4.4),
    "h4_transfer_matrix": (4.8, 4.0),
    "h5_reliability_retention": (7.0, 4.4),
    "h6_ranking_curves": (7.6, 3.9),
    "h7_selection": (7.6, 3.4),
}


def _save(fig, out_dir: Path, name: str) -> list[Path]:
    """`name`.png and .pdf; the PNG with a 256-colour palette (a third of the bytes of full colour,
    no visible difference on these flat-coloured plots), since the pages embed it."""
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = [out_dir / f"{name}.png", out_dir / f"{name}.pdf"]
    for path in paths:
        fig.savefig(path, dpi=DPI)
    plt.close(fig)
    with Image.open(paths[0]) as image:
        palette = image.convert("RGB").quantize(colors=256, method=Image.Quantize.MEDIANCUT)
    palette.save(paths[0], optimize=True)
    return paths


def _figure(name: str, ncols: int = 1, **kwargs):
    return plt.subplots(1, ncols, figsize=SIZES[name], layout="constrained", **kwargs)


def _jitter(n: int, scale: float, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).uniform(-scale, scale, n)


def quadrant_distribution(
    snapshots: pd.DataFrame, min_per_quadrant: int, out_dir: Path
) -> list[Path]:
    """Snapshots per quadrant (stacked by train / eval split when the split is known) against the
    pilot's `min_per_quadrant` gate threshold."""
    name = "quadrant_distribution"
    fig, ax = _figure(name)
    frame = snapshots.assign(q=snapshots.quadrant.map(paper_tables.short_quadrant))
    splits = [s for s in ("train", "eval") if "split" in frame and (frame.split == s).any()] or [
        None
    ]
    bottom = np.zeros(len(paper_tables.SHORT))
    for i, split in enumerate(splits):
        part = frame if split is None else frame[frame.split == split]
        counts = np.array([(part.q == q).sum() for q in paper_tables.SHORT])
        colors = [QUADRANT_COLORS[q] for q in paper_tables.SHORT]
        ax.bar(
            paper_tables.SHORT,
            counts,
            bottom=bottom,
            color=colors,
            edgecolor="black",
            linewidth=0.6,
            hatch=None if i == 0 else "//",
            alpha=1.0 if i == 0 else 0.55,
            label=None if split is None else f"{split} split",
        )
        bottom += counts
    for x, total in enumerate(bottom):
        ax.text(x, total, f"{int(total)}", ha="center", va="bottom", fontsize=8)
    ax.axhline(
        min_per_quadrant,
        color="black",
        linestyle="--",
        linewidth=1,
        label=f"gate: min_per_quadrant = {min_per_quadrant}",
    )
    ax.set_xticks(
        range(len(paper_tables.SHORT)),
        [QUADRANT_NAMES[q].replace(" ", "\n", 1) for q in paper_tables.SHORT],
    )
    ax.set(ylabel="snapshots (count)", title=f"Quadrant balance ({len(frame)} labeled snapshots)")
    ax.set_ylim(0, max(bottom.max(), min_per_quadrant) * 1.15 + 1)
    # outside the axes: it can hide no bar's count
    fig.legend(loc="outside lower center", ncols=3, frameon=False)
    return _save(fig, out_dir, name)


def teachability_landscape(
    snapshots: pd.DataFrame, thresholds: dict | None, out_dir: Path
) -> list[Path]:
    """Fig H1.1: U x L_local, one point per snapshot coloured by ELP_net, with the quadrant
    thresholds."""
    name = "h1_teachability_landscape"
    fig, ax = _figure(name)
    frame = snapshots.dropna(subset=["U", "L_local"])
    jitter = _jitter(len(frame), 0.012)
    elp = frame.ELP_net.fillna(0.0)
    points = ax.scatter(
        frame.U,
        frame.L_local + jitter,
        c=elp,
        cmap="cividis",
        s=16,
        alpha=0.85,
        edgecolors="black",
        linewidths=0.2,
        vmin=min(-0.5, elp.min()),
        vmax=max(1.0, elp.max()),
    )
    fig.colorbar(points, ax=ax, label="ELP_net (CPT success gain over placebo)")
    if thresholds:
        ax.axvline(
            thresholds["U"],
            color="#D55E00",
            linestyle="--",
            linewidth=1.2,
            label=f"U threshold {thresholds['U']:.3f}",
        )
        ax.axhline(
            thresholds["L"],
            color="#D55E00",
            linestyle=":",
            linewidth=1.4,
            label=f"L threshold {thresholds['L']:.3f}",
        )
        counts = frame.quadrant.map(paper_tables.short_quadrant).value_counts()
        for q, (x, y, ha, va) in {
            "Q1": (0.98, 0.98, "right", "top"),
            "Q2": (0.98, 0.02, "right", "bottom"),
            "Q3": (0.02, 0.02, "left", "bottom"),
            "Q4": (0.02, 0.98, "left", "top"),
        }.items():
            ax.text(
                x,
                y,
                f"{q} (n={counts.get(q, 0)})",
                transform=ax.transAxes,
                ha=ha,
                va=va,
                fontsize=8,
                bbox=dict(boxstyle="round,pad=0.2", facecolor="white", edgecolor="none", alpha=0.8),
            )
        ax.legend(loc="center right", framealpha=0.9)
    ax.set(
        xlabel="U: entropy of the student's action distribution (nats)",
        ylabel=(
            "L_local: success gain from forcing the expert action\n"
            "(points jittered by at most 0.012)"
        ),
        title=f"Teachability landscape ({len(frame)} snapshots)",
    )
    return _save(fig, out_dir, name)


def cpt_validation(micro: list[dict], cpt: dict | None, out_dir: Path) -> list[Path]:
    """Fig H2.1: CPT's ELP_net against the real micro-training gain, overall (left) and per quadrant
    (right: mean ELP_net and mean gain, with the per-quadrant Spearman rho)."""
    name = "h2_cpt_validation"
    fig, (left, right) = _figure(name, 2)
    frame = pd.DataFrame(micro)
    frame["q"] = frame.quadrant.map(paper_tables.short_quadrant)
    # identical (ELP_net, gain) pairs are common (few rollouts): one marker per pair, area by count
    # (big ones drawn first, underneath), dodged in x by quadrant
    dodge = dict(zip(paper_tables.SHORT, (-0.03, -0.01, 0.01, 0.03)))
    points = (
        frame.groupby(["q", "ELP_net", "gain"])
        .size()
        .reset_index(name="n")
        .sort_values("n", ascending=False)
    )
    for order, row in enumerate(points.itertuples()):
        left.scatter(
            row.ELP_net + dodge.get(row.q, 0),
            row.gain,
            s=18 * row.n,
            alpha=0.85,
            zorder=3 + order * 1e-3,
            color=QUADRANT_COLORS.get(row.q, "#999999"),
            marker=QUADRANT_MARKERS.get(row.q, "X"),
            edgecolors="black",
            linewidths=0.3,
        )
    handles = [
        plt.Line2D(
            [],
            [],
            linestyle="",
            marker=QUADRANT_MARKERS[q],
            color=QUADRANT_COLORS[q],
            markeredgecolor="black",
            markeredgewidth=0.3,
            label=f"{q} (n={(frame.q == q).sum()})",
        )
        for q in paper_tables.SHORT
    ]
    lo = min(frame.ELP_net.min(), frame.gain.min(), 0) - 0.05
    hi = max(frame.ELP_net.max(), frame.gain.max(), 0) + 0.05
    left.plot(
        [lo, hi], [lo, hi], color="black", linestyle="--", linewidth=0.8, label="gain = ELP_net"
    )
    left.axhline(0, color="grey", linewidth=0.5)
    overall = ((cpt or {}).get("gates") or {}).get("cpt_validity") or {}
    rho, ci = overall.get("value"), overall.get("ci") or [None, None]
    subtitle = (
        f"ρ = {rho:.2f} [{ci[0]:.2f}, {ci[1]:.2f}]\n(one-sided p = {overall.get('p_value'):.2g}, "
        f"n = {overall.get('n')}: {overall.get('status')})"
        if rho is not None
        else f"ρ undefined (n = {len(frame)})"
    )
    left.set(
        xlabel="ELP_net from the CPT (success-rate gain)",
        ylabel="micro-training gain (success-rate gain)",
        title=f"All micro-runs: Spearman {subtitle}",
    )
    left.text(
        0.99,
        0.01,
        "marker area ∝ micro-runs; x dodged ±0.03 by quadrant",
        transform=left.transAxes,
        ha="right",
        va="bottom",
        fontsize=6.5,
        color="grey",
    )
    left.legend(
        handles=handles + left.get_legend_handles_labels()[0], loc="upper left", fontsize=6.5
    )
    per_q = (cpt or {}).get("per_quadrant", {})
    x = np.arange(len(paper_tables.SHORT))
    elp = [_mean_ci(frame.ELP_net[frame.q == q]) for q in paper_tables.SHORT]
    gain = [_mean_ci(frame.gain[frame.q == q]) for q in paper_tables.SHORT]
    for offset, stats, color, hatch, label in (
        (-0.2, elp, "#56B4E9", None, "mean ELP_net (CPT)"),
        (0.2, gain, "#D55E00", "//", "mean micro-training gain"),
    ):
        means = np.array([m for m, _, _ in stats])
        errors = np.array([[m - lo, hi - m] for m, lo, hi in stats]).T
        right.bar(
            x + offset,
            means,
            0.4,
            color=color,
            edgecolor="black",
            linewidth=0.5,
            hatch=hatch,
            label=label,
            yerr=np.nan_to_num(errors),
            capsize=3,
            error_kw={"elinewidth": 0.8},
        )
    right.axhline(0, color="black", linewidth=0.6)
    labels = []
    for q in paper_tables.SHORT:
        stats = next((v for k, v in per_q.items() if paper_tables.short_quadrant(k) == q), {})
        r, n = stats.get("rho"), stats.get("n") or int((frame.q == q).sum())
        if r is None or n < 4:
            labels.append(f"{q}\nρ n/a")
            continue
        low, high = fisher_interval(r, n, 1, 0.95)
        labels.append(f"{q}\nρ = {r:.2f}\n[{low:.2f}, {high:.2f}]")
    right.set_xticks(x, labels)
    right.set(
        ylabel="success-rate gain",
        title="By quadrant: means with 95% t-intervals\n"
        "ρ within the quadrant [95% Fisher interval]",
    )
    right.legend(loc="best")
    return _save(fig, out_dir, name)


def _mean_ci(values: pd.Series, level: float = 0.95) -> tuple[float, float, float]:
    """(mean, low, high): the mean with its t-interval (NaN bounds below two values)."""
    values = pd.to_numeric(values, errors="coerce").dropna()
    mean = float(values.mean()) if len(values) else np.nan
    if len(values) < 2:
        return mean, mean, mean
    half = (
        student_t.ppf(0.5 + level / 2, len(values) - 1) * values.std(ddof=1) / np.sqrt(len(values))
    )
    return mean, mean - half, mean + half


def _heatmap(
    fig,
    ax,
    matrix: pd.DataFrame,
    xlabel: str,
    ylabel: str,
    outline_diagonal: bool = False,
    low: pd.DataFrame | None = None,
    high: pd.DataFrame | None = None,
) -> None:
    """A delta heatmap in pp, each cell's value written in it, with its interval [low, high] below
    when given."""
    values = matrix.to_numpy(dtype=float) * 100  # percentage points
    bounds = (
        None
        if low is None or high is None
        else (low.to_numpy(dtype=float) * 100, high.to_numpy(dtype=float) * 100)
    )
    span = max(np.nanmax(np.abs(values)) if np.isfinite(values).any() else 0.0, 1.0)
    norm = TwoSlopeNorm(vmin=-span, vcenter=0.0, vmax=span)
    cmap = plt.get_cmap("RdBu").with_extremes(bad="#DDDDDD")
    image = ax.imshow(np.ma.masked_invalid(values), cmap=cmap, norm=norm, aspect="auto")
    fig.colorbar(image, ax=ax, label="Δ success vs base model (pp)")
    for i in range(values.shape[0]):
        for j in range(values.shape[1]):
            v = values[i, j]
            text = "n/a" if np.isnan(v) else f"{v:+.1f}"
            dark = not np.isnan(v) and abs(v) > 0.6 * span
            color = "white" if dark else "black"
            if (
                bounds is not None
                and not np.isnan(v)
                and np.isfinite([bounds[0][i, j], bounds[1][i, j]]).all()
            ):
                ax.text(j, i - 0.1, text, ha="center", va="center", fontsize=9, color=color)
                ax.text(
                    j,
                    i + 0.22,
                    f"[{bounds[0][i, j]:+.0f}, {bounds[1][i, j]:+.0f}]",
                    ha="center",
                    va="center",
                    fontsize=7,
                    color=color,
                )
            else:
                ax.text(j, i, text, ha="center", va="center", fontsize=9, color=color)
    if outline_diagonal:
        for k in range(min(values.shape)):
            ax.add_patch(
                plt.Rectangle((k - 0.5, k - 0.5), 1, 1, fill=False, edgecolor="black", linewidth=2)
            )
    ax.set_xticks(range(values.shape[1]), list(matrix.columns))
    ax.set_yticks(range(values.shape[0]), list(matrix.index))
    ax.set(xlabel=xlabel, ylabel=ylabel)


def supervision_heatmap(per_quadrant: pd.DataFrame, out_dir: Path) -> list[Path]:
    """Fig H3.1: the 4 x 3 quadrant x supervision heatmap: a cell's success delta on held-out
    snapshots of the quadrant it was trained on, with its paired 95% interval when phase 3 wrote
    one."""
    name = "h3_supervision_heatmap"
    fig, ax = _figure(name)
    low, high = (
        paper_tables.in_quadrant_matrix(per_quadrant, c) if c in per_quadrant else None
        for c in ("delta_ci_low", "delta_ci_high")
    )
    _heatmap(
        fig,
        ax,
        paper_tables.in_quadrant_matrix(per_quadrant),
        "supervision format",
        "training (and evaluation) quadrant",
        low=low,
        high=high,
    )
    ax.set_title(
        "In-quadrant gain by supervision format"
        + ("\n(in brackets: the paired 95% interval vs the base, pp)" if low is not None else "")
    )
    return _save(fig, out_dir, name)


def _pp(value) -> str:
    return (
        f"{value * 100:+.1f}" if isinstance(value, (int, float)) and np.isfinite(value) else "n/a"
    )


def transfer_heatmap(transfer: pd.DataFrame, gate: dict | None, out_dir: Path) -> list[Path]:
    """Fig H4.1: transfer matrix: success delta on each evaluation quadrant of the cells trained on
    each quadrant (mean over formats); the diagonal is outlined. The title gives the phase 3 gate
    `transfer_diagonal` as the evaluate_models stage decided it (diagonal minus off-diagonal with
    its interval, and the status)."""
    name = "h4_transfer_matrix"
    fig, ax = _figure(name)
    _heatmap(
        fig,
        ax,
        paper_tables.transfer_pivot(transfer),
        "evaluation quadrant",
        "training quadrant",
        outline_diagonal=True,
    )
    if gate and gate.get("status"):
        ci = gate.get("ci") or [None, None]
        ax.set_title(
            f"Cross-quadrant transfer: diagonal {_pp(gate.get('diagonal_mean'))} pp, off-diagonal "
            f"{_pp(gate.get('off_diagonal_mean'))} pp\ndifference {_pp(gate.get('value'))} pp "
            f"[{_pp(ci[0])}, {_pp(ci[1])}] (gate: {gate['status']})"
        )
    else:
        ax.set_title(
            "Cross-quadrant transfer\n(no transfer_diagonal verdict in reports/phase3/metrics.json)"
        )
    return _save(fig, out_dir, name)


def _pareto(points: np.ndarray) -> np.ndarray:
    """Indices of the points no other point beats on both axes (higher is better), sorted by x."""
    keep = [
        i
        for i, (x, y) in enumerate(points)
        if not any((ox >= x and oy >= y) and (ox > x or oy > y) for ox, oy in points)
    ]
    return np.array(sorted(keep, key=lambda i: points[i][0]), dtype=int)


def _error(row: pd.Series, prefix: str) -> np.ndarray | None:
    """[[below], [above]] in pp for `prefix`'s `_ci_low` / `_ci_high` columns, or None when the row
    has none."""
    low, high = row.get(f"{prefix}_ci_low"), row.get(f"{prefix}_ci_high")
    if low is None or high is None or pd.isna(low) or pd.isna(high):
        return None
    return np.array([[max(0.0, row[prefix] - low)], [max(0.0, high - row[prefix])]]) * 100


def reliability_retention(
    overall: pd.DataFrame, retention: pd.DataFrame | None, retention_gate: float, out_dir: Path
) -> list[Path]:
    """Fig H5.3: reliability gain (held-out task success delta) against retention delta per trained
    model (with their paired 95% intervals when phase 3 wrote them), the Pareto frontier and the
    retention gate's non-inferiority bound (`retention_gate`, e.g. -0.03)."""
    name = "h5_reliability_retention"
    fig, ax = _figure(name)
    frame = paper_tables.main_results(overall, retention, None)
    frame = frame[frame.kind != "base"].dropna(subset=["delta"])
    if "retention_delta" not in frame:
        frame["retention_delta"] = np.nan
    frame = frame.dropna(subset=["retention_delta"])
    group = frame.format.where(frame.kind == "cell", frame.kind).fillna(frame.kind)
    for key, part in frame.groupby(group):
        for _, row in part.iterrows():
            q = row.train_quadrant if isinstance(row.train_quadrant, str) else None
            color = FORMAT_COLORS.get(key, "#999999")
            xerr, yerr = (_error(row, prefix) for prefix in ("retention_delta", "delta"))
            # the paired 95% intervals, when phase 3 wrote them
            if xerr is not None or yerr is not None:
                ax.errorbar(
                    row.retention_delta * 100,
                    row.delta * 100,
                    xerr=xerr,
                    yerr=yerr,
                    fmt="none",
                    ecolor=color,
                    elinewidth=0.6,
                    alpha=0.35,
                    zorder=2,
                )
            ax.scatter(
                row.retention_delta * 100,
                row.delta * 100,
                s=42,
                color=color,
                marker=QUADRANT_MARKERS.get(q, "X"),
                edgecolors="black",
                linewidths=0.4,
                zorder=3,
                alpha=0.85,
            )
    if len(frame):
        pts = np.column_stack([frame.retention_delta * 100, frame.delta * 100])
        front = pts[_pareto(pts)]
        ax.plot(
            front[:, 0],
            front[:, 1],
            color="black",
            linewidth=1,
            linestyle="-",
            zorder=2,
            marker="o",
            markersize=12,
            markerfacecolor="none",
            label="Pareto frontier",
        )
    ax.axvline(
        retention_gate * 100,
        color="#D55E00",
        linestyle="--",
        linewidth=1,
        label=f"retention margin {retention_gate * 100:.0f} pp",
    )
    ax.axhline(0, color="grey", linewidth=0.6)
    ax.axvline(0, color="grey", linewidth=0.6)
    ax.margins(x=0.15, y=0.08)
    handles = [
        plt.Line2D([], [], linestyle="", marker="o", color=FORMAT_COLORS[k], label=k)
        for k in sorted(set(group))
        if k in FORMAT_COLORS
    ]
    handles += [
        plt.Line2D([], [], linestyle="", marker=m, color="white", markeredgecolor="black", label=q)
        for q, m in QUADRANT_MARKERS.items()
    ]
    handles += ax.get_legend_handles_labels()[0]
    ax.legend(
        handles=handles, loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=7, borderaxespad=0
    )
    ax.set(
        xlabel="retention Δ: success on the retention panel vs base (pp)",
        ylabel="reliability Δ: held-out task success vs base (pp)",
        title=f"Reliability vs retention ({len(frame)} models)"
        + ("\nthin lines: paired 95% intervals of the deltas" if "delta_ci_low" in frame else ""),
    )
    # one label per distinct point (models with the same numbers share it), placed clear of the
    # others
    labels = []
    for (x, y), part in frame.groupby([frame.retention_delta * 100, frame.delta * 100]):
        names = list(part.model)
        labels.append(
            ((x, y), ", ".join(names[:3]) + (f" +{len(names) - 3}" if len(names) > 3 else ""))
        )
    points = np.column_stack([frame.retention_delta * 100, frame.delta * 100])
    front = points[_pareto(points)] if len(points) else points
    # the frontier's rings are larger
    _place_labels(
        fig,
        ax,
        labels,
        np.vstack([points, front]),
        np.r_[np.full(len(points), 8.0), np.full(len(front), 16.0)],
    )
    return _save(fig, out_dir, name)


# offsets tried, in points from the labelled point, nearest first
LABEL_RINGS = (5, 11, 18, 26, 36, 48)
LABEL_ANGLES = (30, -30, 150, -150, 90, -90, 0, 180)


def _place_labels(
    fig,
    ax,
    labels: list[tuple[tuple[float, float], str]],
    points: np.ndarray,
    marker_px: np.ndarray,
    fontsize: float = 6,
) -> None:
    """Write each (xy, text) label near its point where its box overlaps no label placed before it,
    no marker at `points` (a box of half-width `marker_px`, in pixels, around each) and stays inside
    the axes: the first clear offset of a ring around the point (nearest first), joined to the point
    by a thin line when it is not the nearest ring. A label with no clear place takes the nearest
    offset. The layout is fixed first (one draw) so that the boxes hold on save."""
    from matplotlib.transforms import Bbox

    fig.canvas.draw()
    fig.set_layout_engine("none")
    renderer = fig.canvas.get_renderer()
    frame_box = ax.get_window_extent(renderer)
    taken = (
        [
            Bbox.from_extents(px - r, py - r, px + r, py + r)
            for (px, py), r in zip(ax.transData.transform(points), marker_px)
        ]
        if len(points)
        else []
    )
    offsets = [
        (r * np.cos(np.radians(a)), r * np.sin(np.radians(a)))
        for r in LABEL_RINGS
        for a in LABEL_ANGLES
    ]

    def annotate(xy, text, dx, dy, leader: bool):
        return ax.annotate(
            text,
            xy,
            xytext=(dx, dy),
            textcoords="offset points",
            fontsize=fontsize,
            color="#333333",
            ha="left" if dx > 0.5 else "right" if dx < -0.5 else "center",
            va="bottom" if dy > 0.5 else "top" if dy < -0.5 else "center",
            arrowprops={
                "arrowstyle": "-",
                "color": "#888888",
                "linewidth": 0.5,
                "shrinkA": 0,
                "shrinkB": 3,
            }
            if leader
            else None,
        )

    for xy, text in labels:
        chosen = offsets[0]
        for dx, dy in offsets:
            trial = annotate(xy, text, dx, dy, leader=False)
            box = trial.get_window_extent(renderer)
            trial.remove()
            inside = (
                frame_box.x0 <= box.x0
                and box.x1 <= frame_box.x1
                and frame_box.y0 <= box.y0
                and box.y1 <= frame_box.y1
            )
            if inside and not any(box.overlaps(other) for other in taken):
                chosen = (dx, dy)
                break
        label = annotate(xy, text, *chosen, leader=np.hypot(*chosen) > LABEL_RINGS[0] + 0.5)
        taken.append(label.get_window_extent(renderer))


def ranking_curves(
    ranking: pd.DataFrame,
    out_dir: Path,
    intervals: pd.DataFrame | None = None,
    gate: dict | None = None,
) -> list[Path]:
    """Fig H6.1: NDCG@K (left) and precision@K (right) of the predictor's ranking of snapshots by
    teachability, against ranking by entropy, random order and the oracle (true ELP_net).
    `intervals` (`paper_tables.ranking_intervals`) shades the predictor's and entropy's 95%
    task-bootstrap intervals; `gate` (the phase 4 verdict `beats_entropy`) puts the gate's
    difference with its interval and status in the figure's title."""
    name = "h6_ranking_curves"
    fig, axes = _figure(name, 2)
    for ax, metric, label in zip(axes, ("ndcg", "precision"), ("NDCG@K", "precision@K")):
        order = [m for m in METHOD_STYLE if m in set(ranking.method)]
        order += sorted(set(ranking.method) - set(order))
        for method in order:
            part = ranking[ranking.method == method].sort_values("k")
            if metric not in part:
                continue
            color, marker, style = METHOD_STYLE.get(method, ("#CC79A7", "x", "-"))
            ax.plot(
                part.k,
                part[metric],
                color=color,
                marker=marker,
                linestyle=style,
                markersize=4,
                label=method,
            )
            band = (
                None
                if intervals is None
                else intervals[intervals.method == method].sort_values("k")
            )
            if band is not None and len(band) and f"{metric}_ci_low" in band:
                ax.fill_between(
                    band.k,
                    band[f"{metric}_ci_low"],
                    band[f"{metric}_ci_high"],
                    color=color,
                    alpha=0.15,
                    linewidth=0,
                )
        title = f"{label} by ranking method"
        ax.set(xlabel="K (top-ranked snapshots)", ylabel=label, ylim=(0, 1.05), title=title)
        ax.grid(alpha=0.3)
        ax.legend(loc="best")
    lines = (
        ["shaded: 95% task-bootstrap intervals of the predictor and entropy"]
        if intervals is not None and len(intervals)
        else []
    )
    if gate and gate.get("status") and gate.get("value") is not None:
        ci, level = gate.get("ci") or [None, None], gate.get("ci_level")
        interval = f" [{ci[0]:+.3f}, {ci[1]:+.3f}]" if None not in ci else ""
        lines.append(
            f"gate beats_entropy at K = {gate.get('k')}: NDCG@K predictor − entropy "
            f"{gate['value']:+.3f}{interval}"
            + (f" ({level:.0%} interval)" if isinstance(level, (int, float)) else "")
            + f": {gate['status']}"
        )
    if lines:
        fig.suptitle("\n".join(lines), fontsize=8.5)
    return _save(fig, out_dir, name)


def selection_comparison(
    selection: dict, results: pd.DataFrame | None, out_dir: Path
) -> list[Path]:
    """Fig H7.1: each selection method's success delta (with the 95% CI when selection_results.csv
    has it) and retention delta, at the same budget K."""
    name = "h7_selection"
    fig, (left, right) = _figure(name, 2)
    table = paper_tables.selection_summary(selection)
    x = np.arange(len(table))
    colors = [METHOD_STYLE.get(m, ("#CC79A7",))[0] for m in table.method]
    errors, label = None, "95% Wilson CI of success"
    # the paired interval of the delta itself
    if {"delta_ci_low", "delta_ci_high"} <= set(table.columns):
        errors = (
            np.vstack(
                [
                    (table.delta - table.delta_ci_low).fillna(0).clip(lower=0),
                    (table.delta_ci_high - table.delta).fillna(0).clip(lower=0),
                ]
            )
            * 100
        )
        label = "paired 95% CI of the delta"
    elif results is not None and {"method", "ci_low", "ci_high", "success"} <= set(results.columns):
        ci = table[["method", "success"]].merge(
            results[["method", "ci_low", "ci_high"]], on="method", how="left"
        )
        errors = (
            np.vstack([(ci.success - ci.ci_low).fillna(0), (ci.ci_high - ci.success).fillna(0)])
            * 100
        )
    left.bar(
        x, table.delta * 100, color=colors, edgecolor="black", linewidth=0.5, yerr=errors, capsize=3
    )
    retention_errors = None
    if {"retention_delta_ci_low", "retention_delta_ci_high"} <= set(table.columns):
        retention_errors = (
            np.vstack(
                [
                    (table.retention_delta - table.retention_delta_ci_low).fillna(0).clip(lower=0),
                    (table.retention_delta_ci_high - table.retention_delta).fillna(0).clip(lower=0),
                ]
            )
            * 100
        )
    right.bar(
        x,
        table.retention_delta * 100,
        color=colors,
        edgecolor="black",
        linewidth=0.5,
        yerr=retention_errors,
        capsize=3,
    )
    for ax, values, title, ylabel in (
        (left, table.delta, "Reliability gain", "held-out task success Δ vs base (pp)"),
        (right, table.retention_delta, "Retention", "retention-panel success Δ vs base (pp)"),
    ):
        ax.axhline(0, color="black", linewidth=0.6)
        for xi, v in zip(x, values * 100):
            if pd.notna(v):
                ax.annotate(
                    f"{v:+.1f}",
                    (xi, v),
                    xytext=(5, 2 if v >= 0 else -2),
                    textcoords="offset points",
                    ha="left",
                    va="bottom" if v >= 0 else "top",
                    fontsize=7.5,
                )
        low, high = ax.get_ylim()
        span = max(abs(low), abs(high), 2.0) * 1.2
        ax.set_ylim(
            min(low * 1.2, -span * 0.15) if low < 0 else -span * 0.1, max(high * 1.2, span * 0.15)
        )
        ax.set_xticks(x, table.method)
        ax.set(
            xlabel="selection method",
            ylabel=ylabel,
            title=(
                f"{title} at budget K = {selection.get('budget')} ({selection.get('format', '')})"
            ),
        )
    if errors is not None:
        left.set_xlabel(f"selection method\n(error bars: {label})")
    if retention_errors is not None:
        right.set_xlabel("selection method\n(error bars: paired 95% CI of the delta)")
    return _save(fig, out_dir, name)
