"""In-context patches: the one-step supervision the Contextual Patch Test puts in the student's
prompt.

The same wording is used to teach the offline student to read patches, by the teacher, and by the
training formats, so what the student saw in training is what it is tested with.
"""

from __future__ import annotations

import random

_PLACEBOS = [
    "Teacher: read the whole observation once more before you choose.",
    "Teacher: keep the mission in mind and take one step at a time.",
    "Teacher: there is no rush; think about the scene in front of you.",
    "Teacher: remember that every action changes what you can see.",
    "Teacher: stay calm and focus on the task you were given today.",
]


def demo_patch(action: str, rationale: str = "") -> str:
    """The correct action with a short rationale."""
    return f"Teacher: do '{action}'. {rationale}".strip()


def hint_patch(hint: str) -> str:
    """A diagnosis of the situation that does not name the action."""
    return f"Teacher: {hint}"


def contrast_patch(wrong: str, right: str, why: str = "") -> str:
    """The student's wrong action against the correct one."""
    return f"Teacher: '{wrong}' is a mistake here; do '{right}' instead. {why}".strip()


def placebo_patch(target_len: int, rng: random.Random) -> str:
    """Content-neutral text of about `target_len` characters (the CPT control)."""
    text = rng.choice(_PLACEBOS)
    while len(text) < target_len - 20:
        text += " " + rng.choice(_PLACEBOS).removeprefix("Teacher: ").capitalize()
    return text
