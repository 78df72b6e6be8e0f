import json
import re
import warnings
from pathlib import Path

import pandas as pd
import pytest
from PIL import Image

from teachable.core.params import Params
from teachable.report import figures, paper_tables
from teachable.report.build import KEY_FIGURES, build_report
from teachable.report.gates import SEEDS, SELF_TAGGED, compute_gates, gates_metrics, mlflow_tags
from teachable.report.loaders import load_inputs, snapshot_frame
from tests.report_synthetic import write_repo

PARAMS = Params.defaults(quadrants={"min_per_quadrant": 10})


def build_strict(root: Path):
    """build_report with any FutureWarning an error (pyproject's filter ignores them elsewhere): a
    pandas or matplotlib deprecation the report's code walks into fails the test that builds it."""
    with warnings.catch_warnings():
        warnings.simplefilter("error", FutureWarning)
        return build_report(PARAMS, root)


@pytest.fixture(scope="module")
def full(tmp_path_factory):
    root = tmp_path_factory.mktemp("full")
    write_repo(root)
    return root, build_strict(root)


@pytest.fixture(scope="module")
def small_repo(tmp_path_factory):
    """A repo of 4 snapshots a quadrant that the figure tests only read."""
    root = tmp_path_factory.mktemp("small") / "repo"
    write_repo(root, n_per_quadrant=4)
    return root


def _gates(root: Path) -> dict:
    return {g["id"]: g for g in compute_gates(load_inputs(root))}


DRAWERS = {
    "quadrant_distribution": lambda i, d: figures.quadrant_distribution(
        snapshot_frame(i.snapshots), 10, d
    ),
    "h1_teachability_landscape": lambda i, d: figures.teachability_landscape(
        snapshot_frame(i.snapshots), i.thresholds, d
    ),
    "h2_cpt_validation": lambda i, d: figures.cpt_validation(i.micro, i.cpt, d),
    "h3_supervision_heatmap": lambda i, d: figures.supervision_heatmap(i.per_quadrant, d),
    "h4_transfer_matrix": lambda i, d: figures.transfer_heatmap(
        i.transfer, i.phase3_metrics["gates"]["transfer_diagonal"], d
    ),
    "h5_reliability_retention": lambda i, d: figures.reliability_retention(
        i.overall, i.retention, -0.03, d
    ),
    "h6_ranking_curves": lambda i, d: figures.ranking_curves(
        i.ranking,
        d,
        paper_tables.ranking_intervals(i.oof, i.snapshots, [5, 10, 20]),
        i.predictor["gates"]["beats_entropy"],
    ),
    "h7_selection": lambda i, d: figures.selection_comparison(i.selection, i.selection_results, d),
}


@pytest.mark.heavy
@pytest.mark.parametrize("name", sorted(DRAWERS))
def test_each_figure_writes_a_png_and_pdf_of_the_expected_size(name, small_repo, tmp_path):
    png, pdf = DRAWERS[name](load_inputs(small_repo), tmp_path / "fig")
    assert (png.name, pdf.name) == (f"{name}.png", f"{name}.pdf")
    width, height = figures.SIZES[name]
    with Image.open(png) as image:
        assert image.size == (round(width * figures.DPI), round(height * figures.DPI))
        # something was drawn, not a blank canvas
        assert len(set(image.convert("L").getdata())) > 10
    assert pdf.read_bytes().startswith(b"%PDF") and pdf.stat().st_size > 2000


@pytest.mark.heavy
def test_full_report_writes_every_figure_table_and_the_gates(full):
    root, report = full
    assert sorted(p.stem for p in report.figures if p.suffix == ".png") == sorted(DRAWERS)
    names = {p.stem for p in report.tables}
    assert {
        "h1_quadrant_characteristics",
        "h2_cpt_validity",
        "h3_best_supervision",
        "h4_transfer_matrix",
        "h5_main_results",
        "h6_predictor_metrics",
        "h7_selection_summary",
    } <= names
    assert all(not s.not_run for s in report.sections)
    gates = json.loads((root / "reports/gates.json").read_text())
    assert gates["summary"] == {
        "n_pass": 13,
        "n_fail": 0,
        "n_inconclusive": 0,
        "n_not_applicable": 0,
        "all_applicable_pass": True,
    }
    assert gates["gates"]["1B.cpt_validity"]["fail_action"] == "Use L_local as primary signal"
    main = pd.read_csv(root / "reports/tables/h5_main_results.csv")
    assert {
        "n_seeds",
        "delta",
        "delta_ci_low",
        "delta_ci_high",
        "p_holm",
        "retention_delta_ci_low",
    } <= set(main)
    assert set(main.n_seeds) == {2}


@pytest.mark.heavy
def test_tables_match_their_csv_source(full):
    root, report = full
    csvs = [p for p in report.tables if p.suffix == ".csv"]
    page = report.detail.read_text()
    for csv in csvs:
        frame = pd.read_csv(csv)
        md = csv.with_suffix(".md").read_text()
        assert md == paper_tables.markdown(frame) + "\n", csv.name
        tex = csv.with_suffix(".tex").read_text()
        # header + one line per row
        assert tex.count("\\\\\n") == len(frame) + 1 and "\\begin{table}" in tex
        for column in frame.columns:  # every header is in the page's rendering of the table
            assert f"<th>{column}</th>" in page
    best = pd.read_csv(root / "reports/tables/h3_best_supervision.csv")
    assert list(best.best_format) == ["demo", "hint", "contrast", "contrast"]
    transfer = pd.read_csv(root / "reports/tables/h4_transfer_matrix.csv")
    assert list(transfer.diagonal) == pytest.approx([0.15] * 4)
    assert transfer.loc[0, "eval_Q2"] == pytest.approx(0.02)
    assert (
        best.loc[1, "hint_minus_demo"] == pytest.approx(0.2) and best.loc[1, "hint_p_holm"] < 0.05
    )
    assert list(best.best_delta) == pytest.approx([0.2, 0.25, 0.3, 0.3])
    quadrants = pd.read_csv(root / "reports/tables/h1_quadrant_characteristics.csv")
    assert list(quadrants.n) == [12, 12, 12, 12] and quadrants.share.sum() == pytest.approx(1.0)


@pytest.mark.heavy
def test_gates_fail_on_crafted_bad_inputs(tmp_path):
    write_repo(tmp_path, good=False)
    gates = _gates(tmp_path)
    # 1B decided by micro_train's tests
    assert {k for k, g in gates.items() if g["status"] == "fail"} == set(gates)
    assert (
        gates["2.quadrant_balance"]["value"] == 2
        and gates["2.quadrant_balance"]["fail_action"] == "May merge Q2+Q3"
    )
    assert gates["3.retention"]["value"] == pytest.approx(-0.12)
    assert gates["3.retention"]["fail_action"] == "Adjust learning rate"
    assert gates["3.supervision_differentiation"]["fail_action"] == "Still informative"


@pytest.mark.heavy
def test_the_report_copies_each_verdict_status_and_never_re_derives_it(tmp_path):
    # the numbers of every phase 3-5 verdict say "pass" (positive deltas, small p); the stages said
    # otherwise
    overrides = {
        "end_to_end_gain": "inconclusive",
        "transfer_diagonal": "fail",
        "retention": "not_applicable",
        "supervision_differentiation": "inconclusive",
        "r2_U": "fail",
        "beats_entropy": "inconclusive",
        "selection_ordering": "fail",
        "quadrant_balance": "fail",
        "cpt_validity": "inconclusive",
    }
    write_repo(tmp_path, statuses=overrides)
    gates = _gates(tmp_path)
    gain = gates["3.end_to_end_gain"]
    assert gain["value"] > 0 and gain["ci"] == [0.02, 0.14] and gain["status"] == "inconclusive"
    assert (gain["statistic"], gain["p_value"], gain["alpha"], gain["n"]) == (
        "test_delta_of_chosen_model",
        0.01,
        0.05,
        50,
    )
    assert (gain["min_detectable"], gain["n_needed"]) == (0.07, 480)
    assert gain["detail"]["chosen_model"] == "Q1-demo" and gain["threshold"] == 0.05
    for gid, g in gates.items():
        assert g["status"] == overrides.get(gid.split(".", 1)[1], "pass"), gid
    metrics = gates_metrics(list(gates.values()))
    assert metrics["summary"]["n_inconclusive"] == 4 and metrics["summary"]["n_fail"] == 4
    assert metrics["summary"]["all_applicable_pass"] is False
    entry = metrics["gates"]["3.end_to_end_gain"]
    assert entry["passed"] is None and entry["ci"] == [0.02, 0.14] and entry["n_needed"] == 480
    assert {
        "statistic",
        "ci",
        "p_value",
        "alpha",
        "n",
        "min_detectable",
        "n_needed",
        "status",
    } <= set(entry)
    # the Q1 > Q2 gate names its minimum detectable difference and n per quadrant after what they
    # count
    q1 = gates["1B.q1_beats_q2"]
    raw = json.loads((tmp_path / "reports/phase1b/cpt_correlation.json").read_text())["gates"][
        "q1_beats_q2"
    ]
    assert q1["min_detectable"] == raw["min_detectable_difference"]
    assert q1["n_needed"] == raw["n_needed_per_quadrant"]


@pytest.mark.heavy
def test_a_gate_without_its_input_is_not_applicable_with_the_reason(tmp_path):
    write_repo(tmp_path)
    (tmp_path / "reports/phase3/metrics.json").unlink()
    metrics = json.loads((tmp_path / "reports/phase4/training_result.json").read_text())
    del metrics["gates"]["beats_entropy"]
    (tmp_path / "reports/phase4/training_result.json").write_text(json.dumps(metrics))
    gates = _gates(tmp_path)
    for gid in (
        "3.end_to_end_gain",
        "3.retention",
        "3.supervision_differentiation",
        "3.transfer_diagonal",
    ):
        assert gates[gid]["status"] == "not_applicable"
        assert gates[gid]["detail"]["why"].startswith("reports/phase3/metrics.json: missing")
    assert gates["4.beats_entropy"]["status"] == "not_applicable"
    assert "gates.beats_entropy" in gates["4.beats_entropy"]["detail"]["why"]
    assert gates["4.r2_U"]["status"] == "pass"


@pytest.mark.heavy
def test_old_files_without_verdicts_degrade_to_not_applicable(tmp_path):
    write_repo(tmp_path, old_format=True)
    report = build_report(PARAMS, tmp_path)
    assert {g["status"] for g in report.gates} == {"not_applicable"}
    assert all("no `gates`" in g["detail"]["why"] for g in report.gates)
    by_key = {s.key: s for s in report.sections}
    # no verdict: no best-format table
    assert any("Tab H3.1" in line for line in by_key["h3"].not_run)
    # old CSVs: the columns they have
    main = pd.read_csv(tmp_path / "reports/tables/h5_main_results.csv")
    assert "delta" in main and "delta_ci_low" not in main and "n_seeds" not in main
    page = report.page.read_text()
    # no phase 3 design
    assert "What this run can detect" in page and "does not give the evaluation" in page
    assert (
        json.loads((tmp_path / "reports/gates.json").read_text())["summary"]["n_not_applicable"]
        == 13
    )


@pytest.mark.heavy
def test_the_page_opens_with_what_the_run_can_detect(tmp_path):
    write_repo(tmp_path, n_per_quadrant=4, statuses={"end_to_end_gain": "inconclusive"})
    # with `full`'s build: the report raises no FutureWarning at either size
    report = build_strict(tmp_path)
    assert report.page.exists() and report.detail.exists()
    page = report.page.read_text()
    body = page[page.index("<body>") :]
    first = re.search(r"<section id=\"([^\"]+)\">", body)
    assert first.group(1) == "detect"
    detect = body[first.start() : body.index("</section>", first.start())]
    assert "<h2>What this run can detect</h2>" in detect
    assert "<th>minimum detectable effect</th>" in detect and "<th>n needed</th>" in detect
    assert (
        "100 held-out tasks, 1 rollout(s) per task, temperature 1.0, 2 training seed(s)" in detect
    )
    row = re.search(
        r'<tr class="inconclusive-row"><td><a href="detail.html#gate-3.end_to_end_gain">.*?</tr>',
        detect,
    ).group(0)
    assert "0.080 [0.020, 0.140]" in row and "0.070" in row and "480 test tasks" in row
    assert "inconclusive" in row
    base = re.search(r"Base model&#x27;s held-out task success.*?</tr>", detect).group(0)
    assert "0.400 [0.310, 0.490]" in base and ">100<" in base
    assert detect.count("<tr") == 1 + 2 + 13  # header, two headlines, every gate
    passing = re.search(
        r'<tr class="pass-row"><td><a href="detail.html#gate-3.transfer_diagonal">.*?</tr>', detect
    ).group(0)
    assert passing.endswith('<td class="num">–</td></tr>')  # n needed only for inconclusive gates
    detail = report.detail.read_text()  # each gate's link lands on its row of the full gate table
    gates = detail[detail.index('<section id="gates">') :]
    assert '<tr id="gate-3.end_to_end_gain" class="inconclusive-row">' in gates
    assert '<span class="status inconclusive">' in gates and "<th>α</th>" in gates


def test_supervision_table_reads_the_gate(tmp_path):
    write_repo(tmp_path)
    path = tmp_path / "reports/phase3/metrics.json"
    metrics = json.loads(path.read_text())
    # the gate picks contrast in Q1 although hint's point delta vs demo is larger: the table follows
    # the gate
    q1 = metrics["gates"]["supervision_differentiation"]["per_quadrant"]["Q1"]
    q1.update(best_format="contrast", differs=True)
    q1["comparisons"]["hint"].update(delta=0.2, ci=[-0.1, 0.5], p_holm=0.3)
    path.write_text(json.dumps(metrics))
    table = paper_tables.best_supervision(
        load_inputs(tmp_path).phase3_metrics, load_inputs(tmp_path).per_quadrant
    )
    row = table.set_index("quadrant").loc["Q1"]
    assert row.best_format == "contrast" and bool(row.differs)
    assert (
        row.hint_minus_demo,
        row.hint_minus_demo_ci_low,
        row.hint_minus_demo_ci_high,
        row.hint_p_holm,
    ) == pytest.approx((0.2, -0.1, 0.5, 0.3))
    # Q1-contrast's in-quadrant delta vs the base (the CSV)
    assert row.best_delta == pytest.approx(0.1)
    assert (
        paper_tables.best_supervision({"gates": {}}) is None
        and paper_tables.best_supervision(None) is None
    )


@pytest.mark.heavy
def test_missing_phases_make_sections_not_run_and_gates_not_applicable(tmp_path):
    write_repo(tmp_path, phases=(1, 2))
    report = build_report(PARAMS, tmp_path)
    by_key = {s.key: s for s in report.sections}
    assert not by_key["h1"].not_run and not by_key["h2"].not_run
    for key in ("h3", "h4", "h5", "h6", "h7"):
        assert by_key[key].not_run and not by_key[key].figures
    statuses = {g["id"]: g["status"] for g in report.gates}
    assert all(s == "not_applicable" for k, s in statuses.items() if k[0] in "345")
    assert statuses["1B.cpt_validity"] == "pass" and statuses["2.quadrant_balance"] == "pass"
    page = report.detail.read_text()
    assert "Not run: Fig H7.1: reports/phase5/selection_summary.json missing" in page
    assert gates_metrics(report.gates)["gates"]["5.selection_ordering"]["passed"] is None


def test_nothing_at_all_still_gives_a_page(tmp_path):
    report = build_report(PARAMS, tmp_path)
    assert report.page.exists() and not report.figures and not report.tables
    assert {g["status"] for g in report.gates} == {"not_applicable"}


@pytest.mark.heavy
def test_a_malformed_input_is_reported_not_fatal(tmp_path):
    write_repo(tmp_path)
    (tmp_path / "reports/phase3/transfer_matrix.csv").write_text("a,b\n1,2\n")
    report = build_report(PARAMS, tmp_path)
    h4 = next(s for s in report.sections if s.key == "h4")
    assert h4.not_run and "not usable" in h4.not_run[0]
    # the gate is the evaluate_models stage's verdict, not a reading of the CSV
    assert {g["id"]: g for g in report.gates}["3.transfer_diagonal"]["status"] == "pass"
    (tmp_path / "reports/phase3/metrics.json").write_text("{not json")
    (tmp_path / "reports/phase4/training_result.json").write_text(
        '{"gates": {"r2_U": "pass", "r2_L": {"value": 1}}}'
    )
    gates = {g["id"]: g for g in build_report(PARAMS, tmp_path).gates}
    assert gates["3.transfer_diagonal"]["status"] == "not_applicable"
    assert gates["3.transfer_diagonal"]["detail"]["why"].startswith(
        "reports/phase3/metrics.json: unreadable"
    )
    assert gates["4.r2_U"]["status"] == gates["4.r2_L"]["status"] == "not_applicable"
    assert "unknown status" in gates["4.r2_L"]["detail"]["why"]


@pytest.mark.heavy
def test_pages_are_self_contained_and_escaped(full):
    _, report = full
    first, detail = report.page.read_text(), report.detail.read_text()
    for page in (first, detail):
        assert not re.search(r'(src|href)="(https?:)?//', page)  # no external resources
    assert first.count('src="data:image/png;base64,') == len(KEY_FIGURES)
    assert detail.count('src="data:image/png;base64,') == 8
    assert "<script>x</script>" not in detail and "&lt;script&gt;x&lt;/script&gt;" in detail
    assert 'id="snap-' in detail and 'href="#snap-' in detail
    assert 'id="gate-1B.cpt_validity"' in detail and "Use L_local as primary signal" in detail
    # each page links to the other
    assert 'href="detail.html"' in first and 'href="index.html"' in detail


@pytest.mark.heavy
def test_the_first_page_is_lean(full):
    """The first page: what the run can detect (one table: every gate and headline with its
    interval) and the key figures. It was the whole report (929 KB, 224 tables, every snapshot);
    those moved to detail.html."""
    _, report = full
    first = report.page.read_text()
    assert len(first.encode()) < 250_000
    assert first.count("<table") == 1
    assert "Not run" not in first and 'id="snap-' not in first and "params.yaml" not in first
    detect = first[first.index('<section id="detect">') : first.index("</section>")]
    assert detect.count('href="detail.html#gate-') == 13  # every gate, linked to its details
    assert "[0." in detect  # estimates with their intervals
    assert "13 gates:" in detect and "✓ pass</span>13" in detect
    figures_part = first[first.index('<section id="figures">') :]
    for label in KEY_FIGURES:
        assert f"<figcaption>{label}." in figures_part
    assert figures_part.count('<a href="detail.html#h') == len(KEY_FIGURES)


@pytest.mark.heavy
def test_stage_logs_figures_page_and_gates_to_mlflow(tmp_path, monkeypatch):
    import importlib.util

    import mlflow

    write_repo(tmp_path, phases=(1, 2), n_per_quadrant=4)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    spec = importlib.util.spec_from_file_location(
        "report_stage", Path(__file__).parents[1] / "stages/report.py"
    )
    stage = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(stage)
    stage.main(PARAMS)
    run = mlflow.search_runs(experiment_names=["teachable-moments"], output_format="list")[0]
    assert run.data.tags["stage"] == "report"
    assert run.data.tags["gate.quadrant_balance"] == "fail"  # 4 a quadrant, 10 needed
    assert run.data.tags["gate.end_to_end_gain"] == "not_applicable"
    # decided gates as 1 / 0 under the same names
    assert run.data.metrics["gate.cpt_validity"] == 1.0
    assert run.data.metrics["gates_not_applicable"] == 10  # phases 3, 4 and 5 not run
    artifacts = {a.path for a in mlflow.artifacts.list_artifacts(run_id=run.info.run_id)}
    assert {"figures", "tables", "index.html", "detail.html", "gates.json"} <= artifacts
    assert (tmp_path / "reports/index.html").exists() and (
        tmp_path / "reports/detail.html"
    ).exists()
    # one tag per gate, one name: the report does not tag again what micro_train and predictor
    # tagged on their runs (gate.cpt_validity, gate.r2_U, ...), and never under a second,
    # phase-prefixed name
    gate_tags = {k for k in run.data.tags if k.startswith("gate.")}
    assert gate_tags == {f"gate.{s.key}" for s in SEEDS if s.source not in SELF_TAGGED}
    assert not any(
        k.startswith(("gate.1B.", "gate.2.", "gate.3.", "gate.4.", "gate.5."))
        for k in run.data.tags
    )


def test_each_gate_is_tagged_once_under_one_name_across_the_stages():
    """Every stage script that tags gates uses `gate.<key>` for the gates of its own verdict file;
    together with the report's tags each of the 13 gates is tagged exactly once. Before, the report
    tagged all 13 again as `gate.<phase>.<key>`, so micro_train's and predictor's 6 gates carried
    two tags under two names."""
    stages = Path(__file__).parents[1] / "stages"
    tagging = {p.stem for p in stages.glob("*.py") if 'set_tags({f"gate.{' in p.read_text()}
    assert tagging == {"micro_train", "predictor"}, (
        "a stage tags gates: update report.gates.SELF_TAGGED"
    )
    by_stage = {"micro_train": "cpt", "predictor": "predictor"}
    assert SELF_TAGGED == {by_stage[s] for s in tagging}
    gates = compute_gates(load_inputs(Path("/nonexistent")))
    from_report = list(mlflow_tags(gates))
    from_stages = [f"gate.{s.key}" for s in SEEDS if s.source in SELF_TAGGED]
    names = from_report + from_stages
    assert len(names) == len(set(names)) == len(SEEDS) == 13
    assert set(names) == {f"gate.{s.key}" for s in SEEDS}


@pytest.mark.heavy
def test_ranking_intervals_reproduce_the_stage_and_bracket_it(tmp_path):
    from teachable.evaluation.predictor.ranking import ranking_curves as stage_curves

    records = write_repo(tmp_path, phases=(1, 4), n_per_quadrant=8)
    inputs = load_inputs(tmp_path)
    intervals = paper_tables.ranking_intervals(
        inputs.oof, inputs.snapshots, [5, 10, 20], n_resamples=200
    )
    by_id = {r["snapshot_id"]: r for r in records}
    rows = [by_id[s] for s in inputs.oof.snapshot_id]
    stage = pd.DataFrame(
        stage_curves(
            [r["cpt"]["ELP_net"] for r in rows],
            inputs.oof.ELP_pred,
            [r["U"] for r in rows],
            [5, 10, 20],
            seed=0,
        )
    )
    merged = intervals.merge(stage, on=["k", "method"], suffixes=("", "_stage"))
    assert len(merged) == 6  # predictor and entropy at three K
    assert merged.ndcg.tolist() == pytest.approx(merged.ndcg_stage.tolist())
    assert merged.precision.tolist() == pytest.approx(merged.precision_stage.tolist())
    for metric in ("ndcg", "precision"):
        assert (merged[f"{metric}_ci_low"] <= merged[metric] + 1e-9).all()
        assert (merged[metric] <= merged[f"{metric}_ci_high"] + 1e-9).all()
    assert paper_tables.ranking_intervals(None, records, [5]) is None


def test_the_main_table_adjusts_the_comparisons_with_the_self_control_by_holm():
    """Tab H5.1 shows each model minus the self control with Holm's p over those comparisons (not
    over the base's), and leaves the columns out where no control ran."""
    from teachable.report.paper_tables import main_results

    overall = pd.DataFrame(
        {
            "model": ["base", "self", "Q1-demo", "Q2-demo", "all"],
            "kind": ["base", "control", "cell", "cell", "baseline"],
            "train_quadrant": ["", "", "Q1", "Q2", ""],
            "success": [0.4, 0.2, 0.5, 0.3, 0.35],
            "delta": [0.0, -0.2, 0.1, -0.1, -0.05],
            "vs_self_delta": [None, None, 0.3, 0.1, 0.15],
            "vs_self_p": [None, None, 0.01, 0.2, 0.04],
        }
    )
    table = main_results(overall, None, None).set_index("model")
    assert table.vs_self_p_holm.to_dict() == pytest.approx(
        {"base": float("nan"), "self": float("nan"), "Q1-demo": 0.03, "Q2-demo": 0.2, "all": 0.08},
        nan_ok=True,
    )
    without = main_results(overall.drop(columns=["vs_self_delta", "vs_self_p"]), None, None)
    assert not [c for c in without if c.startswith("vs_self")]
