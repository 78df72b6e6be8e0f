import json

import pytest

from teachable.__main__ import main
from teachable.report.snapshot_data import describe
from teachable.report.snapshot_view import anchor, to_html
from tests.report_synthetic import write_repo


@pytest.fixture(scope="module")
def repo(tmp_path_factory):
    root = tmp_path_factory.mktemp("repo")
    records = write_repo(root, n_per_quadrant=4)
    return root, records


def test_show_prints_state_distribution_advice_outcomes_and_training(repo, capsys):
    root, records = repo
    q1 = next(r for r in records if r["quadrant"] == "Q1_highU_highL")
    assert main(["show", q1["snapshot_id"], "--root", str(root)]) == 0
    out = capsys.readouterr().out
    for text in (
        q1["mission"],
        q1["obs"],
        f"p({q1['student_action']})",
        q1["teacher"]["hint"],
        "p_force (expert action forced, then student)",
        "over 14 rollouts",
        "p_placebo",
        "L_local = p_force - p_student",
        "(paired)",
        "ELP_net (route chosen on even rollouts, scored on odd)",
        "Q1_highU_highL",
        "Q1-contrast, Q1-demo, Q1-hint",
        "phase 5 selection",
    ):
        assert text in out, text
    lines = [line for line in out.splitlines() if line.strip().startswith("p(")]
    probs = [float(line.split(")")[1].split()[0]) for line in lines]
    assert len(probs) == 6 and probs == sorted(probs, reverse=True)  # most likely action first


def test_show_lists_micro_training_and_selection(repo, capsys):
    root, records = repo
    # micro-trained (records[:20]) and picked by the random selection method (records[0::4])
    first = records[0]
    assert main(["show", first["snapshot_id"], "--root", str(root), "--json"]) == 0
    view = json.loads(capsys.readouterr().out)
    assert view["training"]["micro_training"]["snapshot_id"] == first["snapshot_id"]
    assert view["training"]["selection_methods"] == ["random"]
    assert view["leverage"]["n_force"] == 14 and view["cpt"]["n_per_condition"] == 14
    assert len(view["leverage"]["ci"]["L_local"]) == 2 and len(view["cpt"]["ELP_net_ci"]) == 2


def test_unknown_id_exits_2_and_says_how_to_find_ids(repo, capsys):
    root, _ = repo
    assert main(["show", "no-such-id", "--root", str(root)]) == 2
    err = capsys.readouterr().err
    assert (
        "unknown snapshot id 'no-such-id'" in err
        and "snap-" in err
        and "quadrant_snapshots.jsonl" in err
    )


def test_missing_data_exits_2(tmp_path, capsys):
    assert main(["show", "ep000001-s1", "--root", str(tmp_path)]) == 2
    assert "dvc repro" in capsys.readouterr().err


def test_html_view_is_anchored_and_escaped(repo):
    root, records = repo
    view = describe(records[0]["snapshot_id"], root)
    page = to_html(view)
    assert f'id="{anchor(records[0]["snapshot_id"])}"' in page
    assert "<script>" not in page and "&lt;b&gt;bold?&lt;/b&gt;" in page


def test_list_filters_sorts_and_counts(repo, capsys):
    """`teachable list`: every snapshot of the quadrant file, one row each; --quadrant and --split
    filter, --sort L_local puts the largest first, --limit cuts; --json gives the rows."""
    root, records = repo
    assert main(["list", "--root", str(root)]) == 0
    assert capsys.readouterr().out.strip().endswith(f"{len(records)} snapshots")
    assert (
        main(["list", "--root", str(root), "--quadrant", "Q1", "--sort", "L_local", "--json"]) == 0
    )
    rows = json.loads(capsys.readouterr().out)
    q1 = [r for r in records if r["quadrant"].startswith("Q1")]
    assert len(rows) == len(q1) > 1 and {r["quadrant"] for r in rows} == {"Q1"}
    assert [r["L_local"] for r in rows] == sorted(
        (r["leverage"]["L_local"] for r in q1), reverse=True
    )
    assert main(["list", "--root", str(root), "--split", "eval", "--limit", "1", "--json"]) == 0
    assert [r["split"] for r in json.loads(capsys.readouterr().out)] == ["eval"]


def test_teachable_is_a_console_script():
    """pyproject.toml installs `teachable` (not only `python -m teachable`), and its help names
    every command."""
    import tomllib
    from pathlib import Path

    from teachable.__main__ import cli

    project = tomllib.loads((Path(__file__).resolve().parents[1] / "pyproject.toml").read_text())
    assert project["project"]["scripts"]["teachable"] == "teachable.__main__:cli"
    with pytest.raises(SystemExit) as exit_:
        import sys

        sys.argv = ["teachable", "--help"]
        cli()
    assert exit_.value.code == 0
