"""Phase 1 diagnostics: threshold plots (histograms of U and L_local, the U x L scatter by quadrant)
and leverage by step bucket (the horizon check)."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402

from teachable.labeling.quadrants import QUADRANTS  # noqa: E402

# Okabe-Ito, colour-blind safe
COLORS = dict(zip(QUADRANTS, ("#0072B2", "#E69F00", "#999999", "#009E73")))


def threshold_plots(frame: pd.DataFrame, cut: dict, out: Path) -> list[Path]:
    """Histograms of U and L_local with their thresholds, and the U x L_local scatter by quadrant,
    into `out`."""
    paths = []
    for column, label, threshold, name in (
        ("U", "U (entropy, nats)", cut["U"], "hist_U.png"),
        ("L_local", "L_local (success gain)", cut["L"], "hist_L.png"),
    ):
        fig, ax = plt.subplots(figsize=(5, 3.5))
        ax.hist(frame[column], bins=20, color="#56B4E9", edgecolor="white")
        ax.axvline(threshold, color="black", linestyle="--", label=f"threshold {threshold:.3f}")
        ax.set(xlabel=label, ylabel="snapshots", title=f"{column} over {len(frame)} snapshots")
        ax.legend()
        fig.tight_layout()
        fig.savefig(out / name, dpi=120)
        plt.close(fig)
        paths.append(out / name)
    fig, ax = plt.subplots(figsize=(5.5, 4.5))
    for q in QUADRANTS:
        rows = frame[frame.quadrant == q]
        ax.scatter(
            rows.U, rows.L_local, s=14, alpha=0.7, color=COLORS[q], label=f"{q} ({len(rows)})"
        )
    ax.axvline(cut["U"], color="black", linestyle="--", linewidth=1)
    ax.axhline(cut["L"], color="black", linestyle="--", linewidth=1)
    ax.set(
        xlabel="U (entropy, nats)",
        ylabel="L_local (success gain)",
        title="Snapshots by uncertainty and leverage",
    )
    ax.legend(fontsize=7, loc="best")
    fig.tight_layout()
    fig.savefig(out / "scatter_U_L.png", dpi=120)
    plt.close(fig)
    return paths + [out / "scatter_U_L.png"]


def leverage_by_step(records: list[dict], width: int = 8) -> pd.DataFrame:
    """Per bucket of `width` steps into the episode: snapshots, mean L_local, the share with L_local
    > 0 and the share decided high. With rollouts cut at the episode's end, late snapshots could not
    show leverage; with a horizon measured from the snapshot (`label.horizon`) the shares should not
    fall with the step."""
    frame = pd.DataFrame(
        {
            "step": [r["step_idx"] for r in records],
            "L_local": [r["leverage"]["L_local"] for r in records],
            "high": [r["L_side"] == "high" for r in records],
        }
    )
    frame["steps"] = ((frame.step - 1).clip(lower=0) // width * width + 1).map(
        lambda lo: f"{lo}-{lo + width - 1}"
    )
    table = frame.groupby("steps", sort=False).agg(
        n=("L_local", "size"),
        mean_L_local=("L_local", "mean"),
        share_L_positive=("L_local", lambda s: (s > 0).mean()),
        share_high=("high", "mean"),
    )
    order = sorted(table.index, key=lambda label: int(label.split("-")[0]))
    return table.loc[order].round(4).reset_index()
