"""What a tool-calling student's unparseable replies are: a run's phase 0 failures sorted into
kinds.

A generated reply is a parse failure when it names no valid action
(`teachable.policy.parsing.parse_action`). For a tool-calling environment that covers different
things: text that is no tool call at all (what tau-bench counts as a parse failure), a call to a
tool not available at that state, a call with other argument keys, and a well-formed call with the
right tool and keys whose values are not among the valid ones (a miscopied id, or a `respond`
message that is not one of the environment's listed messages). Reads the `reply` each failed step
keeps. Usage, in a workspace whose `data/rollouts/student.jsonl` comes from `rollouts.action_mode:
generate`:

    python benchmarks/parse_failures.py [--rollouts data/rollouts/student.jsonl] [--examples 2]
"""

from __future__ import annotations

import argparse
from collections import Counter

from teachable.core.records import Episode, read_jsonl
from teachable.envs.toolcall import calls_in_reply, parse_call
from teachable.labeling.estimates import rate
from teachable.policy.parsing import is_malformed


def kind(reply: str, valid_actions: list[str]) -> str:
    if is_malformed(reply):  # the split the stages' metrics make
        return "no tool call in the reply (malformed: tau-bench's parse failure)"
    calls = calls_in_reply(reply)
    if not calls:
        return (
            "well formed but no JSON tool call (call notation or search[...] "
            "/ click[...]), no valid action"
        )
    name, arguments = calls[0]
    same_tool = [
        args for tool, args in filter(None, map(parse_call, valid_actions)) if tool == name
    ]
    if not same_tool:
        return "a tool not available at this state"
    if not any(set(args) == set(arguments) for args in same_tool):
        return "the right tool, other argument keys"
    if name == "respond":
        return "respond: a message not among the listed ones"
    return "the right tool and keys, a value not among the valid ones (a miscopied id)"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rollouts", default="data/rollouts/student.jsonl")
    parser.add_argument("--examples", type=int, default=2, help="replies shown per kind")
    args = parser.parse_args()
    steps = [s for ep in read_jsonl(args.rollouts, Episode) for s in ep.steps]
    failed = [s for s in steps if not s.parse_ok]
    if failed and getattr(failed[0], "reply", None) is None:
        raise SystemExit(
            f"{args.rollouts}: the failed steps keep no `reply` (a run "
            "from before replies were kept)"
        )
    kinds = Counter()
    examples: dict[str, list[str]] = {}
    for step in failed:
        k = kind(step.reply, step.valid_actions)
        kinds[k] += 1
        examples.setdefault(k, []).append(step.reply)
    r = rate(len(failed), len(steps))
    print(
        f"{args.rollouts}: {len(failed)} of {len(steps)} replies named no "
        f"valid action ({r['p']:.3f}, 95% [{r['ci'][0]:.3f}, {r['ci'][1]:.3f}]; "
        "Wilson on replies, not clustered by episode)"
    )
    for k, n in kinds.most_common():
        print(f"  {n:5d}  {n / len(failed):.3f}  {k}")
        for reply in examples[k][: args.examples]:
            print(f"         e.g. {reply[:160]!r}")


if __name__ == "__main__":
    main()
