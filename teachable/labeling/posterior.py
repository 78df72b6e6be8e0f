"""Posterior stopping for a snapshot's leverage side (`label.stopping: posterior`), beside the
interval rule.

Why: the interval rule (`labeling.label.needs_more`) stops only once a Bonferroni-corrected interval
clears the threshold, and for the commonest pilot snapshot (the student fails from it with or
without the expert's action: no discordant pair) that takes about z^2 / t pairs whatever the run's
other snapshots show. A prior fitted across the run's snapshots says how often "forcing changes
nothing" happens, so a few concordant pairs can settle a side with a stated posterior error.

Model. A snapshot's unmatched pairs (rollouts whose own first draw did not pick the expert's action;
every pair when p_match is unknown) fall in three cells: b (forced succeeded, student failed), c
(the reverse), r (the rest), multinomial with probabilities theta = (theta_b, theta_c, theta_r);
L_local = (1 - p_match)(theta_b - theta_c), or theta_b - theta_c when p_match is unknown. Write
delta = theta_b + theta_c (how often forcing changes the outcome) and rho = theta_b / delta (how
often, when it does, the forced arm wins). Across a run's snapshots, with weight pi0 delta = 0
("forcing changes nothing": no discordant pair ever, L_local = 0), else delta ~ Beta(a_1, a_2) and,
independently, rho ~ Beta(c_1, c_2) (`Prior.discordance`, `Prior.direction`).

Two priors of that form (`label.posterior_prior`):
- "split" (the default): all five numbers free. The discordance can be J-shaped (a_1 < 1: most
  snapshots that are not exactly null rarely change outcome) while the discordant pairs mostly go
  the forced arm's way (c_1 > c_2).
- "dirichlet" (the earlier rule, kept for comparison): theta ~ Dirichlet(alpha_b, alpha_c, alpha_r),
  the special case a = (alpha_b + alpha_c, alpha_r), c = (alpha_b, alpha_c), which ties the
  discordance's shape to the direction's concentration. On the pilot it put mean 0.3 on the
  discordance, so a snapshot with one discordant pair in 16 stays near P(high) 0.5 and runs to the
  cap.

Fit (`fit_prior`): empirical Bayes. The numbers maximise the marginal likelihood of every snapshot's
first-round counts (closed form: two beta-binomial factors; 1 for the point mass when b = c = 0,
else 0), by L-BFGS-B from fixed starts. The first round is the same for every snapshot whatever the
rule does later, so the prior does not depend on the decisions it drives, nor on chunking. Under
"split" each Beta's concentration (a_1 + a_2, c_1 + c_2) is at most `CONCENTRATION_CAP`: rounds of 4
pairs cannot tell a concentration above about that from infinity (the beta-binomial's overdispersion
(n + k) / (1 + k) is within 1.2 of 1 there), and the unbounded fit can run to its bound; on the
pilot's snapshots 0-39 the "dirichlet" fit did (concentration 1350: every non-null snapshot has the
same theta), and 8 of its 35 sides decided at level 0.05 were wrong (benchmarks/RESULTS.md).

Posterior (`posterior_high`): conjugate. The point mass keeps weight w0 = pi0 1[b = c = 0] /
marginal; otherwise delta ~ Beta(a_1 + b + c, a_2 + r) and rho ~ Beta(c_1 + b, c_2 + c),
independent; P(L_local > t) = w0 1[0 > t] + (1 - w0) P(delta (2 rho - 1) > t / (1 - p_match)), a
one-dimensional integral over delta's quantiles on a fixed grid (`split_difference_above`): no Monte
Carlo, so the same counts give the same number everywhere.

Stopping (`posterior_side`): the side is the more probable one; the rule stops once the posterior
probability of the other side is below `label.posterior_error`. A posterior probability is
calibrated under its prior whatever the stopping time, so among stopped snapshots the share on the
wrong side is at most that level when the prior fits (checked in simulation, with the prior fitted
as the pipeline fits it, in tests/test_posterior_stopping.py). The prior is a plug-in estimate: with
runs of 20-40 snapshots its uncertainty, which the posterior ignores, about doubled the wrong share
at level 0.05; from about 80 snapshots it held (benchmarks/RESULTS.md).
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy.optimize import minimize
from scipy.special import betainc, betaincinv, betaln, expit, gammaln

log = logging.getLogger(__name__)

CELLS = ("b", "c", "r")  # forced succeeded and student failed, the reverse, the rest (concordant)
MODELS = ("split", "dirichlet")
# midpoint grid; against 65536 points the error stayed below 2e-4 (2 ms a call)
QUADRATURE_POINTS = 1024
# "dirichlet": keeps the Dirichlet proper and the fit finite when every count is concordant
ALPHA_BOUNDS = (1e-2, 1e3)
# "split": the most either Beta's a_1 + a_2 may be (see the module docstring)
CONCENTRATION_CAP = 16.0
CONCENTRATION_FLOOR = 2e-2
LOGIT_BOUND = 12.0  # pi0 and the Betas' means in about [6e-6, 1 - 6e-6]
FIT_STARTS = (
    (0.0, 0.0, 0.0, 0.0),
    (1.0, -1.0, -1.0, 1.0),
    (-1.0, 0.5, 0.5, 0.5),
    (2.0, -2.0, -2.0, 0.0),
)
# logit pi0, logit mean, log k (delta, rho)
SPLIT_STARTS = (
    (0.0, -1.0, 1.0, 1.0, 1.0),
    (1.0, -1.0, 2.0, 2.0, 1.0),
    (-1.0, -2.0, 0.5, 0.0, 0.5),
    (2.0, 0.0, 2.5, 1.0, 2.5),
    (-3.0, -2.0, 0.0, 1.5, 1.5),
)
# when no snapshot has a pair to fit on: flat, half the mass on no effect
DEFAULT_PRIOR = (0.5, (1.0, 1.0, 1.0))


@dataclass(frozen=True)
class Prior:
    """The fitted mixture: weight `pi0` on "forcing changes nothing", else delta = theta_b + theta_c
    ~ Beta(`discordance`) and rho = theta_b / delta ~ Beta(`direction`), independent."""

    pi0: float
    discordance: tuple[float, float]
    direction: tuple[float, float]
    model: str = "split"
    n_snapshots: int = 0  # snapshots with at least one pair in the fit
    log_likelihood: float = 0.0

    @classmethod
    def dirichlet(
        cls, pi0: float, alpha: Sequence[float], n_snapshots: int = 0, log_likelihood: float = 0.0
    ) -> Prior:
        """The point mass and Dirichlet(alpha_b, alpha_c, alpha_r) on theta, in this form."""
        a_b, a_c, a_r = (float(a) for a in alpha)
        return cls(pi0, (a_b + a_c, a_r), (a_b, a_c), "dirichlet", n_snapshots, log_likelihood)

    def to_dict(self) -> dict:
        """What the stage's metrics show (rounded for reading; the records used the full values)."""
        (a1, a2), (c1, c2) = self.discordance, self.direction
        out = {
            "model": (
                f"{self.model}: pi0 * point mass at theta_b = theta_c = 0 + (1 - pi0) "
                "* delta ~ Beta(discordance), rho ~ Beta(direction) on the unmatched "
                "pairs (delta = theta_b + theta_c, rho = theta_b / delta)"
            ),
            "pi0": round(self.pi0, 6),
            "discordance": [round(a1, 6), round(a2, 6)],
            "direction": [round(c1, 6), round(c2, 6)],
            "continuous_mean": {
                "b": round(a1 / (a1 + a2) * c1 / (c1 + c2), 6),
                "c": round(a1 / (a1 + a2) * c2 / (c1 + c2), 6),
                "r": round(a2 / (a1 + a2), 6),
            },
            "n_snapshots": self.n_snapshots,
            "log_likelihood": round(self.log_likelihood, 6),
        }
        if self.model == "dirichlet":
            out["alpha"] = {"b": round(c1, 6), "c": round(c2, 6), "r": round(a2, 6)}
        return out


def pair_counts(force, student, matched=None) -> tuple[int, int, int]:
    """(b, c, r) over the unmatched pairs (all pairs when `matched` is None): b = forced succeeded
    and student failed, c = the reverse, r = concordant. Matched pairs are one episode, so they
    carry nothing about theta."""
    force, student = np.asarray(force, dtype=bool), np.asarray(student, dtype=bool)
    keep = (
        ~np.asarray(matched, dtype=bool) if matched is not None else np.ones(force.size, dtype=bool)
    )
    f, s = force[keep], student[keep]
    b, c = int(np.sum(f & ~s)), int(np.sum(~f & s))
    return b, c, int(f.size) - b - c


def log_marginal(counts, pi0: float, discordance, direction) -> np.ndarray:
    """Each snapshot's log marginal likelihood of its counts (rows of b, c, r) under the mixture
    prior."""
    x = np.asarray(counts, dtype=float).reshape(-1, 3)
    b, c, r = x.T
    (a1, a2), (c1, c2) = discordance, direction
    log_continuous = (
        gammaln(x.sum(axis=1) + 1)
        - gammaln(x + 1).sum(axis=1)
        + betaln(a1 + b + c, a2 + r)
        - betaln(a1, a2)
        + betaln(c1 + b, c2 + c)
        - betaln(c1, c2)
    )
    with np.errstate(divide="ignore"):
        log_point = np.where((b == 0) & (c == 0), np.log(pi0), -np.inf)
    return np.logaddexp(log_point, np.log1p(-pi0) + log_continuous)


def _beta(logit_mean: float, log_k: float) -> tuple[float, float]:
    m, k = float(expit(logit_mean)), float(np.exp(log_k))
    return m * k, (1 - m) * k


def _fit_dirichlet(x: np.ndarray) -> Prior:
    def unpack(v):
        a_b, a_c, a_r = np.exp(v[1:])
        return float(expit(v[0])), (a_b + a_c, a_r), (a_b, a_c)

    objective = lambda v: -float(log_marginal(x, *unpack(v)).sum())
    bounds = [(-LOGIT_BOUND, LOGIT_BOUND)] + [tuple(np.log(ALPHA_BOUNDS))] * 3
    best = min(
        (minimize(objective, np.array(s), method="L-BFGS-B", bounds=bounds) for s in FIT_STARTS),
        key=lambda r: r.fun,
    )
    pi0, alpha = float(expit(best.x[0])), np.exp(best.x[1:])
    return Prior.dirichlet(pi0, alpha, len(x), -float(best.fun))


def _fit_split(x: np.ndarray) -> Prior:
    unpack = lambda v: (float(expit(v[0])), _beta(v[1], v[2]), _beta(v[3], v[4]))
    objective = lambda v: -float(log_marginal(x, *unpack(v)).sum())
    log_k = tuple(np.log((CONCENTRATION_FLOOR, CONCENTRATION_CAP)))
    bounds = [
        (-LOGIT_BOUND, LOGIT_BOUND),
        (-LOGIT_BOUND, LOGIT_BOUND),
        log_k,
        (-LOGIT_BOUND, LOGIT_BOUND),
        log_k,
    ]
    best = min(
        (minimize(objective, np.array(s), method="L-BFGS-B", bounds=bounds) for s in SPLIT_STARTS),
        key=lambda r: r.fun,
    )
    return Prior(*unpack(best.x), "split", len(x), -float(best.fun))


def fit_prior(counts: Sequence[Sequence[int]], model: str = "split") -> Prior:
    """The prior of form `model` that maximises the marginal likelihood of the counts (one row of b,
    c, r per snapshot); rows without a pair are left out. Deterministic: fixed starts, the best
    optimum kept."""
    if model not in MODELS:
        raise ValueError(f"posterior prior model {model!r}: one of {MODELS}")
    x = np.asarray(counts, dtype=float).reshape(-1, 3)
    x = x[x.sum(axis=1) > 0]
    if not len(x):
        log.warning(
            "posterior prior: no snapshot has an unmatched pair in its first round; "
            "using the default"
        )
        default = Prior.dirichlet(*DEFAULT_PRIOR)
        return (
            default
            if model == "dirichlet"
            else Prior(default.pi0, default.discordance, default.direction)
        )
    return _fit_dirichlet(x) if model == "dirichlet" else _fit_split(x)


def null_weight(counts: Sequence[int], prior: Prior) -> float:
    """The posterior weight of "forcing changes nothing" given one snapshot's counts (0 once a pair
    is discordant)."""
    b, c, _ = counts
    if b or c:
        return 0.0
    return float(
        np.exp(
            np.log(prior.pi0)
            - log_marginal([counts], prior.pi0, prior.discordance, prior.direction)[0]
        )
    )


@functools.lru_cache(maxsize=1024)
def _quantile_grid(a: float, b: float) -> np.ndarray:
    """Beta(a, b)'s quantiles at the midpoint grid (read-only). The inverse is most of a posterior's
    cost, and a run's snapshots share a few (prior + counts) pairs, so each is computed once."""
    u = (np.arange(QUADRATURE_POINTS) + 0.5) / QUADRATURE_POINTS
    grid = betaincinv(a, b, u)
    grid.flags.writeable = False
    return grid


def split_difference_above(
    discordance: Sequence[float], direction: Sequence[float], s: float
) -> float:
    """P(delta (2 rho - 1) > s) for delta ~ Beta(discordance) and rho ~ Beta(direction),
    independent: E over delta of P(rho > (1 + s / delta) / 2), integrated on a midpoint grid of
    delta's quantiles."""
    if s <= -1:
        return 1.0
    if s >= 1:
        return 0.0
    delta = _quantile_grid(float(discordance[0]), float(discordance[1]))
    with np.errstate(divide="ignore", invalid="ignore"):
        cut = np.where(delta > 0, (1 + s / delta) / 2, -np.inf if s < 0 else np.inf)
    return float(
        np.mean(1.0 - betainc(float(direction[0]), float(direction[1]), np.clip(cut, 0.0, 1.0)))
    )


def dirichlet_difference_above(alpha: Sequence[float], s: float) -> float:
    """P(theta_1 - theta_2 > s) for theta ~ Dirichlet(alpha_1, alpha_2, alpha_3): theta_1 + theta_2
    ~ Beta(alpha_1 + alpha_2, alpha_3) and theta_1 / (theta_1 + theta_2) ~ Beta(alpha_1, alpha_2),
    independent."""
    a1, a2, a3 = (float(a) for a in alpha)
    return split_difference_above((a1 + a2, a3), (a1, a2), s)


def posterior_high(
    counts: Sequence[int], p_match: float | None, threshold: float, prior: Prior
) -> float:
    """P(L_local > threshold | the snapshot's pair counts) under the prior. With p_match known
    L_local is (1 - p_match) times the unmatched pairs' difference, so the threshold on that
    difference is t / (1 - p_match)."""
    weight = 1.0 if p_match is None else 1.0 - p_match
    null_high = float(0.0 > threshold)  # L_local = 0 under "forcing changes nothing"
    if weight <= 0:
        return null_high
    b, c, r = (float(x) for x in counts)
    w0 = null_weight(counts, prior)
    (a1, a2), (c1, c2) = prior.discordance, prior.direction
    continuous = split_difference_above((a1 + b + c, a2 + r), (c1 + b, c2 + c), threshold / weight)
    return w0 * null_high + (1 - w0) * continuous


def posterior_side(p_high: float, error: float) -> str:
    """The stopping decision: high (or low) once the posterior probability of the other side is
    below `error`, else undetermined (another round, or the cap reached without a side)."""
    if 1.0 - p_high < error:
        return "high"
    if p_high < error:
        return "low"
    return "undetermined"
