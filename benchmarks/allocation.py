"""Statistical efficiency of labeling: a fixed number of rollouts per arm vs sequential allocation
under the interval rule and under the posterior rule, on the same snapshots, judged against a high-n
reference.

Each design labels the same snapshots with the pipeline's own two passes (`label_snapshots`: every
first round, the posterior rule's prior fitted once on all of them, then the rounds after). A
snapshot's leverage side (L_local above or at/below `quadrants.L_threshold`) is compared with the
side of a reference that spends `--reference` rollouts on the student and forced arms. The fixed
design calls every side by its point estimate; the interval rule (rounds of `label.round_size` up to
`label.max_rollouts`) calls a side once its interval clears the threshold, the posterior rule
(rounds of `--round` up to `label.max_rollouts`) once the posterior probability of the wrong side is
below its stopping level; either, when the cap comes first, by its point estimate (reported apart as
"undetermined"), as `quadrants.undetermined: point` places it.
Rollouts count the arms that decide the side: student, forced and the expert's one (the CPT arms get
`label.cpt_rollouts` in every design, so they are left out); distinct episodes count what the engine
ran (`run_shared` runs a student rollout whose own first draw picked the expert's action once for
both arms). The calibration table gives, per stopping level, the share of decided sides that
disagree with the reference. Seconds are measured for the fixed design, the interval rule and the
posterior rule at `--level`, each running every episode it needs; the other levels and the reference
reuse episodes already run (`CountingEngine`), which changes no record, and report no seconds.

`--cache FILE`: an episode is a pure function of its spec, so the episodes a run asks for (every
design's, the reference's 0..n-1 included, and the one-step probes that find the student's first
actions) can be kept. When FILE does not exist the run is as above and then writes every episode it
ran to FILE (JSON, keyed by the spec); when it exists every design replays its episodes from there
(any it lacks are run and added) and none reports seconds (`--time-first`: but the first prior at
`--level`, which runs every episode it needs and is timed). The reference at `--reference` covers
every design with at most that many rollouts per arm, so after one full run a rule is compared in
seconds.

    python benchmarks/allocation.py [--snapshots 40] [--start 0] [--reference 64] [--fixed 16]
        [--round 4] [--cap 16] [--levels 0.02,0.05,0.1,0.2] [--level 0.05]
        [--priors split,dirichlet] [--split-at N] [--root DIR] [--cache FILE [--time-first]]

`--root`: a project folder holding params.yaml, data/snapshots.jsonl and the student
(`student.dir`), for a pilot run elsewhere.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
import time
from pathlib import Path

from teachable.core.params import load_params
from teachable.core.records import Episode, Snapshot, read_jsonl
from teachable.labeling.estimates import wilson
from teachable.labeling.label import label_snapshots
from teachable.policy.hf import HFPolicy
from teachable.rollout.engine import RolloutEngine
from teachable.teacher import OracleTeacher

log = logging.getLogger("allocation")


class CountingEngine(RolloutEngine):
    """The pipeline's engine, counting the distinct episodes `run_shared` asks for (its specs named
    `shared|k`).

    Every episode it runs goes into `cache`; with `reuse` it takes the ones another design already
    ran from there. An episode is a function of its spec (start state, sample seed, horizon, forced
    first action, patch), which is why records do not depend on the batch, so reuse changes no
    record, only the seconds: the designs whose seconds are reported run without it."""

    def __init__(self, *args, cache: dict, reuse: bool, **kwargs):
        super().__init__(*args, **kwargs)
        self.cache, self.reuse, self.episodes = cache, reuse, 0

    def _key(self, spec) -> str:
        """The spec without its id, and whether steps are recorded (the first-action probes record
        them), as JSON: the same string in memory and in a `--cache` file."""
        return json.dumps(
            [*dataclasses.astuple(dataclasses.replace(spec, episode_id="")), self.record_steps]
        )

    def run(self, specs, on_episode=None):
        self.episodes += sum(s.episode_id.startswith("shared|") for s in specs)
        todo = [s for s in specs if not (self.reuse and self._key(s) in self.cache)]
        for spec, episode in zip(todo, super().run(todo, on_episode)):
            self.cache[self._key(spec)] = episode
        return [
            self.cache[self._key(s)].model_copy(update={"episode_id": s.episode_id}) for s in specs
        ]


def load_cache(path: Path) -> dict:
    with open(path) as f:
        return {key: Episode.model_validate(value) for key, value in json.load(f).items()}


def save_cache(cache: dict, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    with open(tmp, "w") as f:
        json.dump({key: episode.model_dump(mode="json") for key, episode in cache.items()}, f)
    os.replace(tmp, path)


def label_all(snapshots, policy, params, label_params, cache: dict, reuse: bool) -> tuple:
    """Records, seconds, distinct episodes asked for and the posterior prior (None under the other
    rules)."""
    env = params.env
    engine = CountingEngine(
        policy,
        env.name,
        env.max_steps,
        env.history_len,
        label_params.temperature,
        label_params.batch_size,
        record_steps=False,
        cache=cache,
        reuse=reuse,
    )
    start = time.perf_counter()
    records, prior = label_snapshots(
        snapshots,
        policy,
        OracleTeacher(),
        engine,
        label_params,
        params.seed,
        params.quadrants.L_threshold,
    )
    return records, time.perf_counter() - start, engine.episodes, prior


def point_side(record: dict, threshold: float) -> str:
    return "high" if record["leverage"]["L_local"] > threshold else "low"


def called_sides(
    records: list[dict], threshold: float, decides: bool
) -> tuple[list[str], list[str]]:
    """(the rule's own sides, the sides it is scored on: its own, else the point estimate's)."""
    own = [r["leverage"]["side"] if decides else "undetermined" for r in records]
    return own, [
        s if s != "undetermined" else point_side(r, threshold) for s, r in zip(own, records)
    ]


def prior_line(prior) -> str:
    (a1, a2), (c1, c2) = prior.discordance, prior.direction
    extra = (
        f"; as a Dirichlet alpha (b, c, r) ({c1:.3f}, {c2:.3f}, {a2:.3f})"
        if prior.model == "dirichlet"
        else ""
    )
    return (
        f"{prior.model} prior (fitted on the {prior.n_snapshots} first rounds "
        f"with an unmatched pair): pi0 {prior.pi0:.3f}, discordance Beta({a1:.3f}, "
        f"{a2:.3f}), direction Beta({c1:.3f}, {c2:.3f}){extra}"
    )


def score(records: list[dict], truth: list[str], threshold: float, decides: bool) -> dict:
    own, called = called_sides(records, threshold, decides)
    decided = [s == ref for s, ref in zip(own, truth) if s != "undetermined"]
    # student, forced, the expert's one
    return {
        "spent": sum(2 * r["rollouts"]["n_per_arm"] + 1 for r in records),
        "right": [c == ref for c, ref in zip(called, truth)],
        "undetermined": own.count("undetermined"),
        "decided": len(decided),
        "wrong": len(decided) - sum(decided),
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--snapshots", type=int, default=40)
    parser.add_argument(
        "--reference", type=int, default=64, help="rollouts per arm of the reference"
    )
    parser.add_argument(
        "--fixed", type=int, default=16, help="rollouts per arm of the fixed design"
    )
    parser.add_argument("--round", type=int, default=4, help="round size of the posterior rule")
    parser.add_argument(
        "--cap",
        type=int,
        default=None,
        help="the posterior rule's cap per arm (label.max_rollouts)",
    )
    parser.add_argument(
        "--levels", default="0.02,0.05,0.1,0.2", help="posterior stopping levels to calibrate"
    )
    parser.add_argument(
        "--level", type=float, default=0.05, help="the posterior level compared with the others"
    )
    parser.add_argument(
        "--priors",
        default="split,dirichlet",
        help="posterior priors (label.posterior_prior) to compare; the first is timed",
    )
    parser.add_argument(
        "--root", default=".", help="project folder with params.yaml, snapshots and the student"
    )
    parser.add_argument("--start", type=int, default=0, help="the first snapshot")
    parser.add_argument(
        "--split-at",
        type=int,
        default=None,
        help="also score the designs on the snapshots before and after this many (every prior is "
        "still fitted on all the run's first rounds, as the stage fits it)",
    )
    parser.add_argument(
        "--cache",
        type=Path,
        default=None,
        help=(
            "episode cache: written after a full run when absent, replayed "
            "(no seconds) when present"
        ),
    )
    parser.add_argument(
        "--time-first",
        action="store_true",
        help="with a cache present, still run the first prior at --level without it, and time it",
    )
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    cache_path = args.cache.resolve() if args.cache else None
    replay = cache_path is not None and cache_path.exists()
    os.chdir(args.root)
    levels = sorted({float(x) for x in args.levels.split(",")} | {args.level})
    priors = args.priors.split(",")
    params = load_params()
    t = params.quadrants.L_threshold
    snapshots = read_jsonl("data/snapshots.jsonl", Snapshot)[
        args.start : args.start + args.snapshots
    ]
    policy = HFPolicy.load(params.student.dir, batch_size=params.student.score_batch_size)
    p = params.label.model_copy(update={"skip_cpt": True, "stopping": "interval"})
    cap = args.cap or p.max_rollouts
    posterior = lambda model, e: p.model_copy(
        update={
            "stopping": "posterior",
            "round_size": args.round,
            "max_rollouts": cap,
            "posterior_error": e,
            "posterior_prior": model,
        }
    )
    first = (priors[0], args.level)
    designs = {  # timed: each runs every episode it needs; the rest reuse what the timed ones ran
        "fixed": (
            p.model_copy(update={"round_size": args.fixed, "max_rollouts": args.fixed}),
            True,
        ),
        "interval": (p, True),
        first: (posterior(*first), True),
        **{(m, e): (posterior(m, e), False) for m in priors for e in levels if (m, e) != first},
        "reference": (
            p.model_copy(update={"round_size": args.reference, "max_rollouts": args.reference}),
            False,
        ),
    }
    results = {}
    if replay:
        designs = {
            name: (lp, args.time_first and name == first) for name, (lp, _) in designs.items()
        }
        cache = load_cache(cache_path)
        log.info("replaying %d episodes from %s: no seconds reported", len(cache), cache_path)
    else:
        cache = {}
    cached = len(cache)
    for name, (lp, timed) in designs.items():
        results[name] = label_all(snapshots, policy, params, lp, cache, reuse=not timed)
        log.info("%s: %.0f s", name, results[name][1])
    if cache_path is not None and len(cache) > cached:
        save_cache(cache, cache_path)
        log.info("%d episodes written to %s (%d new)", len(cache), cache_path, len(cache) - cached)
    timed = {name for name, (_, t) in designs.items() if t}
    truth = [point_side(r, t) for r in results["reference"][0]]
    if replay:
        print(
            f"episodes replayed from {cache_path} (no seconds"
            + (", but the timed design" if timed else "")
            + ")"
        )
    print(
        f"{len(snapshots)} snapshots (from {args.start}), L threshold {t}, horizon {p.horizon}; "
        f"reference: {args.reference} rollouts per arm (student, forced), its point-estimate side; "
        f"reference sides: {truth.count('high')} high / {truth.count('low')} low"
    )
    for m in priors:
        print(prior_line(results[(m, args.level)][3]))
    names = [
        "fixed",
        "interval",
        first,
        *[(m, e) for m in priors for e in levels if (m, e) != first],
    ]
    label = lambda name: (
        f"fixed, {args.fixed} per arm"
        if name == "fixed"
        else f"interval rule, rounds of {p.round_size} to {p.max_rollouts}, alpha {p.alpha}"
        if name == "interval"
        else f"posterior rule, {name[0]} prior, rounds of {args.round} to {cap}, level {name[1]}"
    )
    scores = {name: score(results[name][0], truth, t, name != "fixed") for name in names}
    fixed_rate = scores["fixed"]["spent"] / max(sum(scores["fixed"]["right"]), 1)
    print(
        "| design | rollouts | distinct episodes | seconds | agree with reference | only it right "
        "/ only fixed right | undetermined at cap | rollouts per correct side | / fixed |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for name in names:
        sc, (records, seconds, episodes, _) = scores[name], results[name]
        correct, rate = sum(sc["right"]), sc["spent"] / max(sum(sc["right"]), 1)
        gained = sum(a and not b for a, b in zip(sc["right"], scores["fixed"]["right"]))
        lost = sum(b and not a for a, b in zip(sc["right"], scores["fixed"]["right"]))
        print(
            f"| {label(name)} | {sc['spent']} | {episodes} | "
            f"{f'{seconds:.0f}' if name in timed else '-'} | {correct}/{len(records)} | "
            f"{gained if name != 'fixed' else '-'} / {lost if name != 'fixed' else '-'} "
            f"| {sc['undetermined'] if name != 'fixed' else '-'} | {rate:.1f} "
            f"| {rate / fixed_rate:.2f} |"
        )
    print()
    print("Calibration: decided sides (before the cap) that disagree with the reference")
    print("| rule | decided | wrong | share wrong (Wilson 95%) |")
    print("|---|---|---|---|")
    for name in names[1:]:
        n, wrong = scores[name]["decided"], scores[name]["wrong"]
        share = (
            f"{wrong / n:.3f} ({wilson(wrong, n)[0]:.3f}-{wilson(wrong, n)[1]:.3f})" if n else "-"
        )
        print(f"| {label(name)} | {n} | {wrong} | {share} |")
    if args.split_at:
        parts = [
            (f"snapshots {args.start}-{args.start + args.split_at - 1}", slice(0, args.split_at)),
            (
                f"snapshots {args.start + args.split_at}-{args.start + len(snapshots) - 1}",
                slice(args.split_at, len(snapshots)),
            ),
        ]
        print()
        print(
            "By part (priors fitted on all the first rounds): agree with reference, "
            "decided wrong / decided, rollouts per correct side / fixed"
        )
        print("| design | " + " | ".join(part for part, _ in parts) + " |")
        print("|---|" + "---|" * len(parts))
        for name in names:
            cells = []
            for _, part in parts:
                sc = score(results[name][0][part], truth[part], t, name != "fixed")
                fx = score(results["fixed"][0][part], truth[part], t, False)
                ratio = (sc["spent"] / max(sum(sc["right"]), 1)) / (
                    fx["spent"] / max(sum(fx["right"]), 1)
                )
                cells.append(
                    f"{sum(sc['right'])}/{len(sc['right'])}, "
                    f"{sc['wrong'] if name != 'fixed' else '-'}/"
                    f"{sc['decided'] if name != 'fixed' else '-'}, {ratio:.2f}"
                )
            print(f"| {label(name)} | " + " | ".join(cells) + " |")
    print()
    for name in ("interval", first):
        print(
            f"rollouts per correct side, {label(name)} / fixed = "
            f"{scores[name]['spent'] / max(sum(scores[name]['right']), 1) / fixed_rate:.2f}"
        )


if __name__ == "__main__":
    main()
