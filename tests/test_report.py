import json
import re
from pathlib import Path

import pandas as pd
import pytest
from PIL import Image

from teachable.config import parse_params
from teachable.report import figures, tables
from teachable.report.build import build_report
from teachable.report.gates import compute_gates, gates_metrics
from teachable.report.loaders import load_inputs, snapshot_frame
from tests.report_synthetic import write_repo

PARAMS = parse_params({"quadrants": {"min_per_quadrant": 10}})


@pytest.fixture(scope="module")
def full(tmp_path_factory):
    root = tmp_path_factory.mktemp("full")
    write_repo(root)
    return root, build_report(PARAMS, root)


def _gates(root: Path, min_per_quadrant: int = 10) -> dict:
    return {g["id"]: g for g in compute_gates(load_inputs(root), min_per_quadrant, PARAMS.predictor.targets)}


DRAWERS = {
    "quadrant_distribution": lambda i, d: figures.quadrant_distribution(snapshot_frame(i.snapshots), 10, d),
    "h1_teachability_landscape": lambda i, d: figures.teachability_landscape(snapshot_frame(i.snapshots),
                                                                             i.thresholds, d),
    "h2_cpt_validation": lambda i, d: figures.cpt_validation(i.micro, i.cpt, d),
    "h3_supervision_heatmap": lambda i, d: figures.supervision_heatmap(i.per_quadrant, d),
    "h4_transfer_matrix": lambda i, d: figures.transfer_heatmap(i.transfer, d),
    "h5_reliability_retention": lambda i, d: figures.reliability_retention(i.overall, i.retention, -0.03, d),
    "h6_ranking_curves": lambda i, d: figures.ranking_curves(i.ranking, d),
    "h7_selection": lambda i, d: figures.selection_comparison(i.selection, i.selection_results, d),
}


@pytest.mark.parametrize("name", sorted(DRAWERS))
def test_each_figure_writes_a_png_and_pdf_of_the_expected_size(name, tmp_path):
    write_repo(tmp_path / "repo", n_per_quadrant=4)
    png, pdf = DRAWERS[name](load_inputs(tmp_path / "repo"), tmp_path / "fig")
    assert (png.name, pdf.name) == (f"{name}.png", f"{name}.pdf")
    width, height = figures.SIZES[name]
    with Image.open(png) as image:
        assert image.size == (round(width * figures.DPI), round(height * figures.DPI))
        assert len(set(image.convert("L").getdata())) > 10  # something was drawn, not a blank canvas
    assert pdf.read_bytes().startswith(b"%PDF") and pdf.stat().st_size > 2000


def test_full_report_writes_every_figure_table_and_the_gates(full):
    root, report = full
    assert sorted(p.stem for p in report.figures if p.suffix == ".png") == sorted(DRAWERS)
    names = {p.stem for p in report.tables}
    assert {"h1_quadrant_characteristics", "h2_cpt_validity", "h3_best_supervision", "h4_transfer_matrix",
            "h5_main_results", "h6_predictor_metrics", "h7_selection_summary"} <= names
    assert all(not s.not_run for s in report.sections)
    gates = json.loads((root / "reports/gates.json").read_text())
    assert gates["summary"] == {"n_pass": 13, "n_fail": 0, "n_inconclusive": 0, "n_not_applicable": 0,
                                "all_applicable_pass": True}
    assert gates["gates"]["1B.cpt_validity"]["fail_action"] == "Use L_local as primary signal"


def test_tables_match_their_csv_source(full):
    root, report = full
    csvs = [p for p in report.tables if p.suffix == ".csv"]
    page = report.page.read_text()
    for csv in csvs:
        frame = pd.read_csv(csv)
        md = csv.with_suffix(".md").read_text()
        assert md == tables.markdown(frame) + "\n", csv.name
        tex = csv.with_suffix(".tex").read_text()
        assert tex.count("\\\\\n") == len(frame) + 1 and "\\begin{table}" in tex  # header + one line per row
        for column in frame.columns:  # every header is in the page's rendering of the table
            assert f"<th>{column}</th>" in page
    best = pd.read_csv(root / "reports/tables/h3_best_supervision.csv")
    assert list(best.best_format) == ["demo", "hint", "contrast", "contrast"]
    transfer = pd.read_csv(root / "reports/tables/h4_transfer_matrix.csv")
    assert list(transfer.diagonal) == pytest.approx([0.15] * 4)
    assert transfer.loc[0, "eval_Q2"] == pytest.approx(0.02)
    quadrants = pd.read_csv(root / "reports/tables/h1_quadrant_characteristics.csv")
    assert list(quadrants.n) == [12, 12, 12, 12] and quadrants.share.sum() == pytest.approx(1.0)


def test_gates_fail_on_crafted_bad_inputs(tmp_path):
    write_repo(tmp_path, good=False)
    gates = _gates(tmp_path)
    expected_fail = {"1B.cpt_validity", "1B.q1_beats_q2", "2.quadrant_balance", "3.supervision_differentiation",
                     "3.retention", "3.transfer_diagonal", "4.r2_U", "4.r2_L", "4.accuracy", "4.beats_entropy",
                     "5.selection_ordering"}
    assert {k for k, g in gates.items() if g["status"] == "fail"} == expected_fail
    assert gates["2.quadrant_balance"]["value"] == 2 and gates["2.quadrant_balance"]["fail_action"] == \
        "May merge Q2+Q3"
    assert gates["3.retention"]["value"] == pytest.approx(-0.08)
    assert gates["3.retention"]["fail_action"] == "Adjust learning rate"
    assert gates["3.supervision_differentiation"]["fail_action"] == "Still informative"


def test_gate_thresholds_at_the_boundary(tmp_path):
    write_repo(tmp_path)
    cpt_path = tmp_path / "reports/phase1b/cpt_correlation.json"
    cpt = json.loads(cpt_path.read_text())
    for status in ("pass", "fail", "inconclusive", "not_applicable"):  # the stage's verdict, shown as it is
        cpt["gates"]["cpt_validity"]["status"] = status
        cpt_path.write_text(json.dumps(cpt))
        assert _gates(tmp_path)["1B.cpt_validity"]["status"] == status
    assert _gates(tmp_path, min_per_quadrant=12)["2.quadrant_balance"]["status"] == "pass"  # 12 per quadrant
    assert _gates(tmp_path, min_per_quadrant=13)["2.quadrant_balance"]["status"] == "fail"
    assert _gates(tmp_path)["2.quadrant_balance"]["detail"]["paper_status"] == "fail"  # seeds: N > 300
    ret_path = tmp_path / "reports/phase3/retention_results.csv"
    ret = pd.read_csv(ret_path)
    for floor, status in ((-0.03, "fail"), (-0.0299, "pass")):
        ret.loc[ret.kind == "cell", "delta"] = floor
        ret.to_csv(ret_path, index=False)
        assert _gates(tmp_path)["3.retention"]["status"] == status
    # a tie between demo and another format goes to demo
    pq_path = tmp_path / "reports/phase3/per_quadrant_results.csv"
    pq = pd.read_csv(pq_path)
    own = (pq.kind == "cell") & (pq.train_quadrant == pq.eval_quadrant)
    pq.loc[own, "delta"] = 0.1
    pq.loc[own & (pq.train_quadrant == "Q2") & (pq.format == "hint"), "delta"] = 0.2
    pq.to_csv(pq_path, index=False)
    diff = _gates(tmp_path)["3.supervision_differentiation"]
    assert (diff["value"], diff["status"]) == (1, "fail")
    assert diff["detail"]["best_format"] == {"Q1": "demo", "Q2": "hint", "Q3": "demo", "Q4": "demo"}


def test_missing_phases_make_sections_not_run_and_gates_not_applicable(tmp_path):
    write_repo(tmp_path, phases=(1, 2))
    report = build_report(PARAMS, tmp_path)
    by_key = {s.key: s for s in report.sections}
    assert not by_key["h1"].not_run and not by_key["h2"].not_run
    for key in ("h3", "h4", "h5", "h6", "h7"):
        assert by_key[key].not_run and not by_key[key].figures
    statuses = {g["id"]: g["status"] for g in report.gates}
    assert all(s == "not_applicable" for k, s in statuses.items() if k[0] in "345")
    assert statuses["1B.cpt_validity"] == "pass"
    page = report.page.read_text()
    assert "Not run: Fig H7.1: reports/phase5/selection_summary.json missing" in page
    assert gates_metrics(report.gates)["gates"]["5.selection_ordering"]["passed"] is None


def test_nothing_at_all_still_gives_a_page(tmp_path):
    report = build_report(PARAMS, tmp_path)
    assert report.page.exists() and not report.figures and not report.tables
    assert {g["status"] for g in report.gates} == {"not_applicable"}


def test_a_malformed_input_is_reported_not_fatal(tmp_path):
    write_repo(tmp_path)
    (tmp_path / "reports/phase3/transfer_matrix.csv").write_text("a,b\n1,2\n")
    report = build_report(PARAMS, tmp_path)
    h4 = next(s for s in report.sections if s.key == "h4")
    assert h4.not_run and "not usable" in h4.not_run[0]
    assert {g["id"]: g for g in report.gates}["3.transfer_diagonal"]["status"] == "not_applicable"


def test_page_is_self_contained_and_escaped(full):
    _, report = full
    page = report.page.read_text()
    assert not re.search(r'(src|href)="(https?:)?//', page)  # no external resources
    assert page.count('src="data:image/png;base64,') == 8
    assert "<script>x</script>" not in page and "&lt;script&gt;x&lt;/script&gt;" in page
    assert 'id="snap-' in page and 'href="#snap-' in page
    assert 'id="gate-1B.cpt_validity"' in page and "Use L_local as primary signal" in page


def test_stage_logs_figures_page_and_gates_to_mlflow(tmp_path, monkeypatch):
    import importlib.util

    import mlflow

    write_repo(tmp_path, phases=(1, 2), n_per_quadrant=4)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    spec = importlib.util.spec_from_file_location("report_stage", Path(__file__).parents[1] / "stages/report.py")
    stage = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(stage)
    stage.main(PARAMS)
    run = mlflow.search_runs(experiment_names=["teachable-moments"], output_format="list")[0]
    assert run.data.tags["stage"] == "report"
    assert run.data.tags["gate.1B.cpt_validity"] == "pass"
    assert run.data.tags["gate.4.r2_U"] == "not_applicable"
    assert run.data.metrics["gates_not_applicable"] == 10  # phases 3, 4 and 5 not run
    artifacts = {a.path for a in mlflow.artifacts.list_artifacts(run_id=run.info.run_id)}
    assert {"figures", "tables", "index.html", "gates.json"} <= artifacts
    assert (tmp_path / "reports/index.html").exists()
