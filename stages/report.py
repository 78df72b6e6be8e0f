"""Stage `report` (appendix A): paper figures and tables per hypothesis H1-H7, the seeds' decision
gates and two self-contained HTML pages (a first page and the detail).

Reads the outputs of phases 1-5 (`teachable.report.loaders.PATHS`; a missing one makes its section
"not run" and its gates "not_applicable"). Writes `reports/figures/*.{png,pdf}`,
`reports/tables/*.{csv,md,tex}`, `reports/gates.json` (DVC metrics), the first page
`reports/index.html` and `reports/detail.html`. Every gate is the verdict the stage computing it
wrote (`teachable.report.gates`); nothing is re-decided here. MLflow: the figures and the pages as
artifacts, each decided gate's pass (1) / fail (0) as the metric `gate.<key>`, and each gate's
status as the tag `gate.<key>` unless its own stage (micro_train, predictor) tagged it already: one
name per gate, each tag set once.
"""

from __future__ import annotations

import logging

from teachable import stage
from teachable.core.params import Params
from teachable.report.build import build_report
from teachable.report.gates import gates_metrics, mlflow_metrics, mlflow_tags
from teachable.core.tracking import stage_run

log = logging.getLogger("report")


def main(params: Params) -> None:
    key = params.model_dump(mode="json", include={"quadrants", "predictor", "gates"})
    with stage_run("report", key) as mlflow:
        report = build_report(params)
        for path in report.figures:
            mlflow.log_artifact(str(path), artifact_path="figures")
        for path in report.tables:
            mlflow.log_artifact(str(path), artifact_path="tables")
        mlflow.log_artifact(str(report.page))
        mlflow.log_artifact(str(report.detail))
        mlflow.log_artifact("reports/gates.json")
        summary = gates_metrics(report.gates)["summary"]
        mlflow.log_metrics(
            {
                "gates_pass": summary["n_pass"],
                "gates_fail": summary["n_fail"],
                "gates_inconclusive": summary["n_inconclusive"],
                "gates_not_applicable": summary["n_not_applicable"],
            }
        )
        mlflow.log_metrics(mlflow_metrics(report.gates))
        # one tag per gate: not those its own stage tagged
        mlflow.set_tags(mlflow_tags(report.gates))
    for g in report.gates:
        log.info(
            "gate %-32s %-15s %s = %s %s p %s n %s",
            g["id"],
            g["status"],
            g["statistic"],
            g["value"],
            g["ci"],
            g["p_value"],
            g["n"],
        )
    log.info(
        "wrote %d figure files, %d table files, %s and %s",
        len(report.figures),
        len(report.tables),
        report.page,
        report.detail,
    )


if __name__ == "__main__":
    stage.run(main)
