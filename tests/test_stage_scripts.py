"""`python stages/x.py` puts `stages/` first on sys.path, so a script named like a module shadows it
everywhere in that process (a `stages/select.py` once broke `import selectors`, hence pandas, in
every stage)."""

import importlib.metadata
import sys
from pathlib import Path

STAGES = Path(__file__).resolve().parents[1] / "stages"


def test_no_stage_script_shadows_a_module():
    installed = {
        name
        for dist in importlib.metadata.distributions()
        for name in (dist.read_text("top_level.txt") or "").split()
    }
    scripts = {p.stem for p in STAGES.glob("*.py")}
    assert not scripts & (set(sys.stdlib_module_names) | installed)


def test_no_stage_script_re_derives_the_phase_0_sample_seed():
    """`teachable.core.tasks.rollout_sample_seed` is the one definition; evaluation and tests
    compare against it."""
    assert not [
        p.name
        for p in STAGES.glob("*.py")
        if "1_000_003" in p.read_text() or "1000003" in p.read_text()
    ]
