"""Variants of the posterior stopping rule, compared in seconds on the outcomes
`benchmarks/allocation.py --cache` kept: replayed on the reference's own rollout sequences, and in
simulated worlds built from them.

Replays. The reference ran rollouts 0..63 of the student and forced arms of every snapshot; a design
with rounds of R up to a cap sees rollouts 0..n-1 of the same sequences (every arm's rollout i has
the same sample seed whatever the design), so a rule is replayed on them without running an episode:
the prior fitted on every snapshot's first round, then rounds until the side is decided or the cap,
an undecided side placed by its point estimate, scored against the reference's point-estimate side
at 64. For the pipeline's own rules this gives the records' decisions (the same rollouts, agreement
and calibration as `allocation.py` prints for them). Columns: snapshots before `--split-at`, after
it, all (the prior fitted on all the first rounds, as the stage fits it), and the first part with
its prior fitted on that part's first rounds alone (a run of that size).

Worlds. Each world draws 80 snapshots with replacement from a basis range of the real ones, a true
theta for each from Dirichlet(its 64-rollout counts (b, c, r) + 1/2) and its real p_match, and
simulates 64 rollouts; the true side is (1 - p_match)(theta_b - theta_c) against the threshold.
Agreement is with the truth (and with a simulated 64-rollout reference); the calibration is the
share of decided sides on the wrong side of the truth.

Variants: the pipeline's priors (`split`, `dirichlet`), the Dirichlet with its concentration capped,
the split prior with other caps, mixtures of 2 or 3 Dirichlets beside the point mass (unbounded,
fitted from grown starts), a discrete grid prior (NPMLE by EM), rounds of 2, a first round of 4 then
rounds of 2, and a cap of 12 per arm.

    python benchmarks/allocation_variants.py --cache .cache/allocation-80x64.json --root DIR
        [--snapshots 80] [--split-at 40] [--worlds 30] [--basis 0:40] [--world-variants "name;name"]
        [--seed 1]
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import numpy as np
from scipy.optimize import minimize
from scipy.special import expit, gammaln, softmax

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.allocation import CountingEngine, load_cache  # noqa: E402
from teachable.labeling import posterior as post  # noqa: E402
from teachable.labeling.estimates import wilson  # noqa: E402
from teachable.labeling.posterior import (
    Prior,
    dirichlet_difference_above,
    fit_prior,
    log_marginal,  # noqa: E402
    pair_counts,
    posterior_high,
    posterior_side,
)

T = 0.1


def reference_outcomes(cache_path: Path, root: str, snapshots: int) -> list[dict]:
    """Rollouts 0..63 of the student and forced arms (and which student rollouts matched) with
    p_match, from the cache: the reference's own first round, replayed."""
    from teachable.core.params import load_params
    from teachable.core.records import Snapshot, read_jsonl
    from teachable.labeling.label import first_round
    from teachable.policy.hf import HFPolicy
    from teachable.teacher import OracleTeacher

    cache = load_cache(cache_path)
    os.chdir(root)
    params = load_params()
    snaps = read_jsonl("data/snapshots.jsonl", Snapshot)[:snapshots]
    policy = HFPolicy.load(params.student.dir, batch_size=params.student.score_batch_size)
    p = params.label.model_copy(update={"skip_cpt": True, "round_size": 64, "max_rollouts": 64})
    env, n = params.env, len(cache)
    engine = CountingEngine(
        policy,
        env.name,
        env.max_steps,
        env.history_len,
        p.temperature,
        p.batch_size,
        record_steps=False,
        cache=cache,
        reuse=True,
    )
    states = first_round(snaps, policy, OracleTeacher(), engine, p, params.seed)
    if len(cache) != n:
        raise SystemExit(
            "the cache lacks some of the reference's episodes: "
            "run allocation.py with --reference 64"
        )
    return [
        {"p_match": s["p_match"], **{k: s["outcomes"][k] for k in ("student", "force", "matched")}}
        for s in states
    ]


def counts(d: dict, n: int) -> tuple[int, int, int]:
    return pair_counts(
        d["force"][:n], d["student"][:n], d["matched"][:n] if d["p_match"] is not None else None
    )


def point_side(d: dict, n: int) -> str:
    b, c, r = counts(d, n)
    weight = 1.0 if d["p_match"] is None else 1 - d["p_match"]
    return "high" if b + c + r and weight * (b - c) / (b + c + r) > T else "low"


# ---- priors beside the pipeline's: each a (fit(counts) -> prior, p_high(counts, p_match, t,
# prior))


def fit_dirichlet_capped(x, cap=16.0) -> Prior:
    """The single Dirichlet with its concentration alpha_b + alpha_c + alpha_r at most `cap`."""
    x = np.asarray(x, float)
    x = x[x.sum(1) > 0]

    def unpack(v):
        m = softmax(np.r_[v[1:3], 0.0]) * np.exp(v[3])
        return Prior.dirichlet(float(expit(v[0])), m)

    f = lambda v: (
        -float(log_marginal(x, unpack(v).pi0, unpack(v).discordance, unpack(v).direction).sum())
    )
    bounds = [(-12, 12), (-12, 12), (-12, 12), (np.log(0.03), np.log(cap))]
    starts = [(0, -1, -2, 1), (1, 0, -1, 2), (-1, -2, -2, 0.5), (2, -1, -1, 2.5)]
    best = min(
        (minimize(f, np.array(s, float), method="L-BFGS-B", bounds=bounds) for s in starts),
        key=lambda r: r.fun,
    )
    return unpack(best.x)


def fit_split_cap(cap: float):
    def fit(x):
        old, post.CONCENTRATION_CAP = post.CONCENTRATION_CAP, cap
        try:
            return fit_prior(x, "split")
        finally:
            post.CONCENTRATION_CAP = old

    return fit


class Mixture:
    """pi0 at no effect + Dirichlet components (weights, alphas), unbounded but for ALPHA_BOUNDS."""

    def __init__(self, pi0, weights, alphas):
        self.pi0, self.weights, self.alphas = pi0, np.asarray(weights), np.asarray(alphas)

    def log_parts(self, x):
        x = np.asarray(x, float).reshape(-1, 3)
        n = x.sum(1)
        cols = [np.where((x[:, 0] == 0) & (x[:, 1] == 0), np.log(self.pi0), -np.inf)]
        for w, a in zip(self.weights, self.alphas):
            cols.append(
                np.log1p(-self.pi0)
                + np.log(w)
                + gammaln(n + 1)
                - gammaln(x + 1).sum(1)
                + gammaln(a.sum())
                - gammaln(n + a.sum())
                + (gammaln(x + a) - gammaln(a)).sum(1)
            )
        return np.stack(cols, 1)


def fit_mixture(k: int):
    shapes = ((0.3, 0.3, 10.0), (3.0, 0.3, 1.0), (0.3, 3.0, 1.0), (1.0, 1.0, 1.0))

    def unpack(v, k):
        z = np.r_[0.0, v[1:k]]
        return Mixture(
            float(expit(v[0])), np.exp(z - np.logaddexp.reduce(z)), np.exp(v[k:]).reshape(k, 3)
        )

    def fit(x):
        x = np.asarray(x, float)
        x = x[x.sum(1) > 0]
        best = None
        for j in range(1, k + 1):
            f = lambda v, j=j: -float(np.logaddexp.reduce(unpack(v, j).log_parts(x), axis=1).sum())
            bounds = [(-12, 12)] * j + [tuple(np.log(post.ALPHA_BOUNDS))] * (3 * j)
            if j == 1:
                starts = [np.array(s, float) for s in post.FIT_STARTS]
            else:
                prev = best.x
                starts = [
                    np.r_[
                        prev[0],
                        prev[1 : j - 1],
                        np.log(1 / j) + np.logaddexp.reduce(np.r_[0.0, prev[1 : j - 1]]),
                        prev[j - 1 :],
                        np.log(s),
                    ]
                    for s in shapes
                ]
            best = min(
                (minimize(f, s, method="L-BFGS-B", bounds=bounds) for s in starts),
                key=lambda r: r.fun,
            )
        return unpack(best.x, k)

    return fit


def mixture_high(c, pm, t, prior: Mixture):
    weight = 1.0 if pm is None else 1 - pm
    logs = prior.log_parts([c])[0]
    w = np.exp(logs - np.logaddexp.reduce(logs))
    return float(
        w[0] * (0 > t)
        + sum(
            wk * dirichlet_difference_above(a + np.asarray(c, float), t / weight)
            for wk, a in zip(w[1:], prior.alphas)
        )
    )


class Grid:
    def __init__(self, points, weights):
        self.points, self.weights = points, weights


def _grid_loglik(x, points):
    x = np.asarray(x, float).reshape(-1, 3)
    with np.errstate(divide="ignore", invalid="ignore"):
        ll = np.where(x[:, None, :] == 0, 0.0, x[:, None, :] * np.log(points)[None])
    return ll.sum(2)


def fit_grid(step=0.05, iters=3000):
    k = int(round(1 / step))
    points = np.array(
        [(i / k, j / k, 1 - (i + j) / k) for i in range(k + 1) for j in range(k + 1 - i)]
    )

    def fit(x):
        x = np.asarray(x, float)
        lik = np.exp(_grid_loglik(x[x.sum(1) > 0], points))
        w = np.full(len(points), 1 / len(points))
        for _ in range(iters):
            p = lik * w
            w = (p / p.sum(1, keepdims=True)).mean(0)
        return Grid(points, w)

    return fit


def grid_high(c, pm, t, prior: Grid):
    weight = 1.0 if pm is None else 1 - pm
    ll = _grid_loglik([c], prior.points)[0]
    p = prior.weights * np.exp(ll - ll.max())
    return float(p[(prior.points[:, 0] - prior.points[:, 1]) * weight > t].sum() / p.sum())


# ---- the rule, replayed


def replay(data, fit, high, level, first=4, step=4, cap=16, prior=None):
    """(sides, rollouts per arm) of the rule on each snapshot's sequences."""
    prior = prior if prior is not None else fit([counts(d, first) for d in data])
    sides, spent = [], []
    for d in data:
        n = first
        while True:
            side = posterior_side(high(counts(d, n), d["p_match"], T, prior), level)
            if side != "undetermined" or n >= cap:
                break
            n = min(n + step, cap)
        sides.append(side)
        spent.append(n)
    return sides, spent, prior


def summary(data, sides, spent, truth):
    called = [s if s != "undetermined" else point_side(d, n) for s, d, n in zip(sides, data, spent)]
    decided = [(s, t) for s, t in zip(sides, truth) if s != "undetermined"]
    return {
        "rollouts": sum(2 * n + 1 for n in spent),
        "right": sum(c == t for c, t in zip(called, truth)),
        "decided": len(decided),
        "wrong": sum(s != t for s, t in decided),
    }


def cell(sc, fixed, n):
    ratio = (sc["rollouts"] / max(sc["right"], 1)) / (fixed["rollouts"] / max(fixed["right"], 1))
    return f"{sc['right']}/{n} (fixed {fixed['right']}), {sc['wrong']}/{sc['decided']}, {ratio:.2f}"


def variants():
    split, dirichlet = (lambda x: fit_prior(x, "split")), (lambda x: fit_prior(x, "dirichlet"))
    out = {}
    for level in (0.05, 0.1, 0.2):
        out[f"split (cap 16), level {level}"] = (split, posterior_high, level, {})
        out[f"dirichlet (unbounded, the earlier rule), level {level}"] = (
            dirichlet,
            posterior_high,
            level,
            {},
        )
        out[f"dirichlet, concentration at most 16, level {level}"] = (
            fit_dirichlet_capped,
            posterior_high,
            level,
            {},
        )
    for level in (0.15, 0.25, 0.3):
        out[f"split (cap 16), level {level}"] = (split, posterior_high, level, {})
    for cap in (8.0, 32.0):
        out[f"split, concentration at most {cap:g}, level 0.2"] = (
            fit_split_cap(cap),
            posterior_high,
            0.2,
            {},
        )
    for level in (0.05, 0.1, 0.2):
        out[f"split, 12 per arm at most, level {level}"] = (
            split,
            posterior_high,
            level,
            {"cap": 12},
        )
        out[f"split, rounds of 2, level {level}"] = (
            split,
            posterior_high,
            level,
            {"first": 2, "step": 2},
        )
        out[f"dirichlet, rounds of 2, level {level}"] = (
            dirichlet,
            posterior_high,
            level,
            {"first": 2, "step": 2},
        )
        out[f"split, first round 4 then rounds of 2, level {level}"] = (
            split,
            posterior_high,
            level,
            {"step": 2},
        )
        out[f"mixture of 2 Dirichlets, level {level}"] = (fit_mixture(2), mixture_high, level, {})
        out[f"mixture of 3 Dirichlets, level {level}"] = (fit_mixture(3), mixture_high, level, {})
        out[f"grid prior (NPMLE, step 0.05), level {level}"] = (fit_grid(), grid_high, level, {})
    return out


def make_world(rng, basis, n=80):
    idx = rng.integers(0, len(basis), n)
    data, truth = [], []
    for i in idx:
        d = basis[i]
        theta = rng.dirichlet(np.asarray(counts(d, 64), float) + 0.5)
        pm = d["p_match"] or 0.0
        matched = rng.random(64) < pm
        cells = rng.choice(3, 64, p=theta)
        data.append(
            {
                "p_match": d["p_match"],
                "matched": matched.tolist(),
                "force": (~matched & (cells == 0)).tolist(),
                "student": (~matched & (cells == 1)).tolist(),
            }
        )
        truth.append("high" if (1 - pm) * (theta[0] - theta[1]) > T else "low")
    return data, truth


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--cache", type=Path, required=True)
    parser.add_argument("--root", default=".")
    parser.add_argument("--snapshots", type=int, default=80)
    parser.add_argument("--split-at", type=int, default=40)
    parser.add_argument("--worlds", type=int, default=30)
    parser.add_argument(
        "--basis", default="0:40", help="snapshots the worlds draw from (start:stop), or 'all'"
    )
    parser.add_argument(
        "--world-variants",
        default=(
            "split (cap 16), level 0.2;dirichlet (unbounded, the earlier rule), level 0.2;"
            "dirichlet, concentration at most 16, level 0.2;split (cap 16), level 0.05;"
            "dirichlet (unbounded, the earlier rule), level 0.05;split (cap 16), level 0.1;"
            "split (cap 16), level 0.25;split, 12 per arm at most, level 0.2"
        ),
    )
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--worlds-only", action="store_true", help="skip the replays' table")
    args = parser.parse_args()
    data = reference_outcomes(args.cache.resolve(), args.root, args.snapshots)
    truth = [point_side(d, 64) for d in data]
    k = args.split_at
    parts = [
        ("0-%d" % (k - 1), slice(0, k)),
        ("%d-%d" % (k, len(data) - 1), slice(k, len(data))),
        ("all", slice(0, len(data))),
    ]
    fixed = lambda sl: summary(
        data[sl], ["undetermined"] * len(data[sl]), [16] * len(data[sl]), truth[sl]
    )
    table = variants()
    if not args.worlds_only:
        replays(data, truth, table, k, parts, fixed)
    world_table(args, data, table)


def replays(data, truth, table, k, parts, fixed) -> None:
    print(
        f"Replays on the reference's sequences ({len(data)} snapshots, "
        f"{truth.count('high')} high): agree with the reference (fixed 16's), decided "
        "wrong / decided, rollouts per correct side / fixed 16's"
    )
    print(
        f"| variant | {' | '.join(name for name, _ in parts)} | 0-{k - 1}, "
        f"prior fitted on 0-{k - 1} only |"
    )
    print("|---|---|---|---|---|")
    for name, (fit, high, level, kw) in table.items():
        sides, spent, prior = replay(data, fit, high, level, **kw)
        cells = [
            cell(summary(data[sl], sides[sl], spent[sl], truth[sl]), fixed(sl), len(data[sl]))
            for _, sl in parts
        ]
        own_sides, own_spent, _ = replay(data[:k], fit, high, level, **kw)
        cells.append(
            cell(summary(data[:k], own_sides, own_spent, truth[:k]), fixed(slice(0, k)), k)
        )
        print(f"| {name} | " + " | ".join(cells) + " |", flush=True)


def world_table(args, data, table) -> None:
    basis = data if args.basis == "all" else data[slice(*map(int, args.basis.split(":")))]
    chosen = {name: table[name] for name in args.world_variants.split(";")}
    rng = np.random.default_rng(args.seed)
    totals = {name: np.zeros(5) for name in ["fixed 16", *chosen]}
    for _ in range(args.worlds):
        world, true = make_world(rng, basis)
        ref = [point_side(d, 64) for d in world]
        f = summary(world, ["undetermined"] * len(world), [16] * len(world), true)
        totals["fixed 16"] += [
            f["rollouts"],
            f["right"],
            sum(point_side(d, 16) == r for d, r in zip(world, ref)),
            0,
            0,
        ]
        for name, (fit, high, level, kw) in chosen.items():
            sides, spent, _ = replay(world, fit, high, level, **kw)
            s = summary(world, sides, spent, true)
            called = [
                x if x != "undetermined" else point_side(d, n)
                for x, d, n in zip(sides, world, spent)
            ]
            totals[name] += [
                s["rollouts"],
                s["right"],
                sum(c == r for c, r in zip(called, ref)),
                s["decided"],
                s["wrong"],
            ]
    w, f = args.worlds, totals["fixed 16"]
    print()
    print(
        f"{w} simulated worlds of 80 snapshots drawn from snapshots {args.basis} "
        f"(seed {args.seed}): mean agreement with the true side and with a "
        "simulated 64-rollout reference, rollouts per correct (true) side / fixed "
        "16's, decided sides on the wrong side of the truth"
    )
    print(
        "| design | agree with truth | agree with reference | / fixed | "
        "decided | wrong share (Wilson 95%) |"
    )
    print("|---|---|---|---|---|---|")
    print(f"| fixed, 16 per arm | {f[1] / w:.2f} | {f[2] / w:.2f} | 1.00 | - | - |")
    for name in chosen:
        s = totals[name]
        lo, hi = wilson(int(s[4]), int(s[3]))
        print(
            f"| {name} | {s[1] / w:.2f} | {s[2] / w:.2f} | {(s[0] / s[1]) / (f[0] / f[1]):.2f} "
            f"| {s[3] / w:.1f} | {s[4] / s[3]:.3f} ({lo:.3f}-{hi:.3f}) |"
        )


if __name__ == "__main__":
    main()
