"""Phase 3 and 5 gates: tests on models evaluated on the same items with the same seeds
(`teachable.gates.paired`).

Outcome arrays are (training seeds, items, rollouts) of 0/1. Every test is one-sided at `alpha`; an
interval is two-sided at 1 - 2 alpha, so each of its bounds is a one-sided alpha bound. `min_effect`
is the smallest success difference worth having, fixed in advance: a gain gate fails when its
interval rules that out. A fail rule that could fire on any of several comparisons (ordering,
supervision differentiation) reads each upper bound at a Bonferroni level, so at the boundary (every
needed effect exactly `min_effect`) it fails with chance at most alpha, as the pass side passes with
chance at most alpha under the null. Paired comparisons carry the training seeds' variance
(`teachable.gates.paired`), so a lucky seed does not pass a gate.
"""

from __future__ import annotations

import numpy as np

from teachable.gates.core import (
    FAIL,
    INCONCLUSIVE,
    PASS,
    POWER,
    decide,
    holm,
    min_detectable_difference,
    not_applicable,
    verdict,
)
from teachable.gates.paired import as_outcomes, compare, items_needed, min_detectable, n_needed


def _level(alpha: float) -> float:
    return 1 - 2 * alpha


def seed_halves(n_seeds: int) -> tuple[list[int], list[int]]:
    """The training seeds that choose a model and those that test it: [0, S//2) and [S//2, S). A
    trained seed is one adapter; the one that looked best on the validation half keeps its luck on
    any items, so the test uses fresh seeds of the chosen recipe. With one seed it both chooses and
    would test (the test is then not run)."""
    half = n_seeds // 2
    return list(range(max(half, 1))), list(range(half, n_seeds)) if n_seeds >= 2 else []


def end_to_end_gain(
    validation: dict[str, np.ndarray],
    base_validation,
    test: dict[str, np.ndarray],
    base_test,
    alpha: float,
    min_effect: float,
) -> dict:
    """Does training help end to end? Each model's arrays hold all its training seeds (seeds, items,
    rollouts). The model with the highest mean success gain over the base on the validation half of
    the held-out tasks, with its training seeds [0, S//2), is chosen there; it is then tested once
    on the other half with its seeds [S//2, S): one-sided paired random-effects test of its gain > 0
    (`teachable.gates.paired.compare`). pass: p < alpha; fail: the interval's upper bound is below
    `min_effect`; else inconclusive. Choosing among many models on the tasks or seeds it is tested
    on would pass by chance alone (the max of noisy deltas). The test half needs 2 seeds to estimate
    the seed variance: with fewer the gate is not applicable (the chosen model is still named)."""
    if not validation or as_outcomes(base_test).shape[1] == 0:
        return not_applicable(
            "test_delta_of_chosen_model", alpha, 0, "no trained model or no test tasks"
        )
    base_rate = as_outcomes(base_validation).mean()
    gains = {
        m: float(as_outcomes(a)[seed_halves(as_outcomes(a).shape[0])[0]].mean() - base_rate)
        for m, a in validation.items()
    }
    chosen = max(sorted(gains), key=lambda m: gains[m])
    chose_on, test_on = seed_halves(as_outcomes(test[chosen]).shape[0])
    seeds = dict(
        chosen_model=chosen,
        validation_delta=round(gains[chosen], 6),
        n_candidates=len(gains),
        validation_seeds=chose_on,
        test_seeds=test_on,
        n_unit="test tasks",
    )
    if len(test_on) < 2:
        return not_applicable(
            "test_delta_of_chosen_model",
            alpha,
            as_outcomes(base_test).shape[1],
            f"{len(test_on)} fresh training seed(s) for the test half: the seed variance needs 2, "
            "so train.n_seeds >= 3 (seeds [0, S//2) choose the model, [S//2, S) test it)",
            threshold=min_effect,
            **seeds,
        )
    tested = as_outcomes(test[chosen])[test_on]
    result = compare(tested, base_test, _level(alpha))
    status = decide(result["p_greater"], result["ci"][1], alpha, min_effect)
    detectable, needed = _detectable(tested, base_test, alpha, min_effect)
    return verdict(
        "test_delta_of_chosen_model",
        result["delta"],
        result["ci"],
        result["p_greater"],
        alpha,
        status,
        result["n_items"],
        threshold=min_effect,
        **seeds,
        df=result["df"],
        se=result["se"],
        min_detectable=detectable,
        n_needed=needed,
        method=result["method"],
    )


def _detectable(
    a, b, alpha: float, effect: float, power: float = POWER
) -> tuple[float | None, int | None]:
    """The minimum detectable difference of the one-sided test at `alpha` of a minus b with `power`
    (`paired.min_detectable`: averaged over replicate runs, since with few seeds the test's critical
    value varies from run to run) and the items it needs for `effect` (`paired.items_needed`)."""
    r = compare(a, b)
    detectable = min_detectable(a, b, alpha, power)
    return detectable, items_needed(
        detectable, r["se"], r["n_items"], effect, r["seed_variance"] or 0.0
    )


def non_inferiority(
    models: dict[str, np.ndarray],
    base,
    alpha: float,
    margin: float,
    statistic: str = "worst_lower_bound",
) -> dict:
    """Does every model keep what the base could do? Per model the one-sided test of delta > -margin
    (its lower bound above -margin). pass: every model non-inferior (an intersection-union test: no
    multiplicity correction needed); fail: some model is inferior, its upper bound below -margin at
    the Bonferroni level over the models; else inconclusive. value: the lowest lower bound;
    n_needed: items for power 0.8 at delta 0 for the noisiest model."""
    if not models or as_outcomes(base).shape[1] == 0:
        return not_applicable(statistic, alpha, 0, "no trained model or an empty panel")
    per_model, noninferior, inferior = {}, [], []
    for name, a in models.items():
        one = compare(a, base, _level(alpha))
        wide = compare(a, base, 1 - 2 * alpha / len(models))
        per_model[name] = {"delta": one["delta"], "ci": one["ci"], "result": one}
        if one["ci"][0] > -margin:
            noninferior.append(name)
        if wide["ci"][1] < -margin:
            inferior.append(name)
    worst = min(per_model, key=lambda m: (per_model[m]["ci"][0], m))
    status = FAIL if inferior else PASS if len(noninferior) == len(models) else INCONCLUSIVE
    noisiest = max(per_model, key=lambda m: (per_model[m]["result"]["se"], m))
    detectable, needed = _detectable(models[noisiest], base, alpha, margin)
    n = as_outcomes(base).shape[1]
    return verdict(
        statistic,
        per_model[worst]["ci"][0],
        per_model[worst]["ci"],
        None,
        alpha,
        status,
        n,
        threshold=-margin,
        margin=margin,
        worst_model=worst,
        worst_delta=per_model[worst]["delta"],
        n_models=len(models),
        n_noninferior=len(noninferior),
        n_inferior=len(inferior),
        inferior=inferior,
        min_detectable=detectable,
        n_needed=needed,
        per_model={m: {"delta": r["delta"], "ci": r["ci"]} for m, r in per_model.items()},
    )


def paired_comparisons(
    pairs: list[tuple[str, str, np.ndarray, np.ndarray]],
    alpha: float,
    fail_alpha: float | None = None,
) -> list[dict]:
    """Each (name_a, name_b, a, b): a minus b with its 1 - 2 alpha interval and one-sided p,
    Holm-adjusted across the list. With `fail_alpha` each also carries `fail_upper`, its upper bound
    at one-sided `fail_alpha` (the multiplicity-corrected level a fail rule compares with the
    smallest useful effect)."""
    results = [
        {
            "a": x,
            "b": y,
            **compare(a, b, _level(alpha)),
            **({"fail_upper": compare(a, b, _level(fail_alpha))["ci"][1]} if fail_alpha else {}),
        }
        for x, y, a, b in pairs
    ]
    for r, p in zip(results, holm([r["p_greater"] for r in results])):
        r["p_holm"] = p
    return results


def _summary(r: dict) -> dict:
    return {
        "delta": r["delta"],
        "ci": r["ci"],
        "p": r["p_greater"],
        "p_holm": r["p_holm"],
        "n": r["n_items"],
        **({"fail_upper": r["fail_upper"]} if "fail_upper" in r else {}),
    }


def supervision_differentiation(
    per_quadrant: dict[str, dict[str, np.ndarray]],
    alpha: float,
    min_effect: float,
    required: int = 2,
    reference: str = "demo",
) -> dict:
    """Does the best supervision format depend on the quadrant? Per quadrant each other format
    against `reference` (demo) on that quadrant's held-out snapshots, one-sided, Holm across every
    comparison. A quadrant differs when some format beats demo significantly (its best format is
    then the significant one with the largest gain; else demo). pass: at least `required` quadrants
    differ; fail: too few quadrants are left where a format could beat demo by `min_effect`, a
    quadrant being closed when every format's upper bound at one-sided alpha / `required` is below
    it; else inconclusive.

    Why alpha / `required` (Bonferroni): with unadjusted bounds the fail side could close any of the
    quadrants where a format truly gains `min_effect`, and in simulation (two such quadrants) it
    failed 0.1 of the time. If u >= `required` quadrants hold a useful format, failing needs u -
    required + 1 of them closed, each closing with chance at most alpha / required, so by Markov's
    inequality the chance is at most u alpha / (required (u - required + 1)) <= alpha."""
    pairs = [
        (q, f, arrays[f], arrays[reference])
        for q, arrays in per_quadrant.items()
        if reference in arrays
        for f in arrays
        if f != reference and as_outcomes(arrays[reference]).shape[1]
    ]
    if not pairs:
        return not_applicable(
            "n_quadrants_where_a_format_beats_demo",
            alpha,
            0,
            "no quadrant has demo and another format on held-out snapshots",
        )
    results = paired_comparisons(pairs, alpha, fail_alpha=alpha / required)
    table: dict[str, dict] = {}
    for r in results:
        q = table.setdefault(
            r["a"], {"comparisons": {}, "best_format": reference, "differs": False, "open": False}
        )
        q["comparisons"][r["b"]] = _summary(r)
        if r["p_holm"] < alpha and (
            not q["differs"] or r["delta"] > q["comparisons"][q["best_format"]]["delta"]
        ):
            q.update(best_format=r["b"], differs=True)
        q["open"] = q["open"] or r["fail_upper"] >= min_effect
    differ = sum(q["differs"] for q in table.values())
    possible = sum(q["differs"] or q["open"] for q in table.values())
    status = PASS if differ >= required else FAIL if possible < required else INCONCLUSIVE
    # the median se
    typical = sorted(range(len(results)), key=lambda i: results[i]["se"])[len(results) // 2]
    detectable, needed = _detectable(
        pairs[typical][2], pairs[typical][3], alpha / len(results), min_effect
    )
    n = int(np.median([r["n_items"] for r in results]))
    return verdict(
        "n_quadrants_where_a_format_beats_demo",
        differ,
        None,
        None,
        alpha,
        status,
        n,
        threshold=required,
        required=required,
        n_quadrants_differ=differ,
        n_quadrants_possible=possible,
        fail_level=alpha / required,
        min_detectable=detectable,
        n_needed=needed,
        n_unit="held-out snapshots per quadrant",
        per_quadrant=table,
    )


def transfer_diagonal(
    cells: dict[str, tuple[str, np.ndarray]],
    base,
    item_quadrant: list[str],
    alpha: float,
    min_effect: float,
    n_resamples: int,
    seed: int,
) -> dict:
    """Does training on a quadrant help that quadrant most? Statistic: the transfer matrix's mean
    diagonal delta minus its mean off-diagonal delta (delta: a model's success minus the base's on
    the same held-out snapshots; each (trained, evaluated) entry averages the formats and seeds
    trained on that quadrant). p: the share of permutations of the items' quadrant labels with a
    statistic at least as large (the null: which quadrant an item is in does not interact with which
    quadrant trained the model). Interval: bootstrap over items within each quadrant. pass: p <
    alpha; fail: the upper bound is below `min_effect`; else inconclusive."""
    labels = np.asarray(item_quadrant)
    trained = sorted({q for q, _ in cells.values()})
    evaluated = sorted(set(labels))
    if len(trained) < 2 or len(evaluated) < 2 or not set(trained) & set(evaluated):
        return not_applicable(
            "diagonal_minus_off_diagonal_delta",
            alpha,
            len(labels),
            "fewer than two trained or evaluated quadrants",
        )
    base_item = as_outcomes(base).mean(axis=(0, 2))
    # (T, N)
    deltas = np.stack(
        [
            np.mean(
                [
                    as_outcomes(a).mean(axis=(0, 2)) - base_item
                    for q, a in cells.values()
                    if q == tq
                ],
                axis=0,
            )
            for tq in trained
        ]
    )
    diagonal = np.array([[t == e for e in evaluated] for t in trained])
    codes = np.array([evaluated.index(q) for q in labels])
    observed = float(_diagonal_statistic(deltas[:, None], codes[None], diagonal)[0])
    rng = np.random.default_rng(seed)
    null = np.concatenate(
        [
            _diagonal_statistic(
                deltas[:, None], np.stack([rng.permutation(codes) for _ in range(b)]), diagonal
            )
            for b in _batches(n_resamples)
        ]
    )
    p = float((1 + (null >= observed - 1e-12).sum()) / (1 + len(null)))
    groups = [np.flatnonzero(codes == i) for i in range(len(evaluated))]
    boot = []
    # items resampled within their quadrant: every quadrant keeps its size
    for b in _batches(n_resamples):
        picks = np.stack(
            [np.concatenate([rng.choice(g, len(g)) for g in groups]) for _ in range(b)]
        )
        boot.append(_diagonal_statistic(deltas[:, picks], codes[picks], diagonal))
    boot = np.concatenate(boot)
    ci = [float(np.quantile(boot, alpha)), float(np.quantile(boot, 1 - alpha))]
    se = float(boot.std(ddof=1))
    status = decide(p, ci[1], alpha, min_effect)
    n = len(labels)
    matrix = _matrix(deltas[:, None], codes[None], len(evaluated))[0]
    return verdict(
        "diagonal_minus_off_diagonal_delta",
        observed,
        ci,
        p,
        alpha,
        status,
        n,
        threshold=min_effect,
        diagonal_mean=float((matrix * diagonal).sum() / diagonal.sum()),
        off_diagonal_mean=float((matrix * ~diagonal).sum() / (~diagonal).sum()),
        n_trained_quadrants=len(trained),
        n_evaluated_quadrants=len(evaluated),
        min_detectable=min_detectable_difference(se, alpha),
        n_needed=n_needed(se, n, min_effect, alpha),
        n_unit="held-out snapshots",
    )


def _matrix(deltas: np.ndarray, codes: np.ndarray, n_quadrants: int) -> np.ndarray:
    """Transfer matrices (B, trained, evaluated) from per-item deltas (T, B, N) and item quadrant
    codes (B, N)."""
    onehot = np.eye(n_quadrants)[codes]  # (B, N, E)
    return np.einsum("tbn,bne->bte", deltas, onehot) / np.maximum(onehot.sum(axis=1), 1)[:, None, :]


def _diagonal_statistic(deltas: np.ndarray, codes: np.ndarray, diagonal: np.ndarray) -> np.ndarray:
    matrix = _matrix(deltas, codes, diagonal.shape[1])
    return (matrix * diagonal).sum((1, 2)) / diagonal.sum() - (matrix * ~diagonal).sum((1, 2)) / (
        ~diagonal
    ).sum()


def _batches(total: int, size: int = 500) -> list[int]:
    return [min(size, total - i) for i in range(0, total, size)]


def ordering(
    models: dict[str, np.ndarray], order: list[str], alpha: float, min_effect: float
) -> dict:
    """Do the methods rank as `order` says (e.g. predictor > entropy > random)? Each neighbouring
    pair a paired one-sided test of a > b on the same items, Holm across the pairs. pass: every pair
    significant; fail: some pair's upper bound at one-sided alpha / k (Bonferroni over the k pairs)
    is below `min_effect` (the data rule out that a beats b usefully); else inconclusive. With
    unadjusted bounds, any of the k pairs could fail the ordering by chance: with every pair exactly
    `min_effect` apart it failed 0.085-0.147 of the time in simulation; the union bound keeps that
    at most alpha. min_detectable: the step between neighbours at which all pairs pass together with
    power 0.8."""
    present = [m for m in order if m in models]
    if len(present) < 2:
        return not_applicable(
            "ordering_" + ">".join(order), alpha, 0, "fewer than two of the methods ran"
        )
    k = len(present) - 1
    results = paired_comparisons(
        [(a, b, models[a], models[b]) for a, b in zip(present, present[1:])],
        alpha,
        fail_alpha=alpha / k,
    )
    significant = all(r["p_holm"] < alpha for r in results)
    ruled_out = any(r["fail_upper"] < min_effect for r in results)
    status = PASS if significant else FAIL if ruled_out else INCONCLUSIVE
    weakest = max(results, key=lambda r: r["p_holm"])
    # every pair must pass: each needs this power for 0.8 together
    each = POWER ** (1 / len(results))
    n = results[0]["n_items"]
    noisiest = max(range(k), key=lambda i: results[i]["se"])
    detectable, needed = _detectable(
        models[present[noisiest]], models[present[noisiest + 1]], alpha / k, min_effect, each
    )
    return verdict(
        "ordering_" + ">".join(present),
        weakest["delta"],
        weakest["ci"],
        weakest["p_holm"],
        alpha,
        status,
        n,
        threshold=min_effect,
        weakest_pair=f"{weakest['a']}>{weakest['b']}",
        comparisons={f"{r['a']}>{r['b']}": _summary(r) for r in results},
        fail_level=alpha / k,
        min_detectable=detectable,
        n_needed=needed,
        n_unit="tasks",
    )
