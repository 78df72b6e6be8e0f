"""The teachability predictor: four scikit-learn models on cheap features, cross-validated by task,
saved by skops.

Targets and inputs:
- `U` (the student's entropy) from the text features alone (structure + level + embedding): U
  itself, and the margin and top probability that come with it, are inputs of the other models, so
  predicting U from them would measure nothing;
- `L_local` (leverage.L_local), `ELP_net` (cpt.ELP_net) and `quadrant` from every cheap feature.

Models (`predictor.model`): `forest` (default) = `RandomForestRegressor` / `RandomForestClassifier`
(200 trees, min 5 samples a leaf, 30% of the features a split); `linear` = `StandardScaler` +
`Ridge(alpha)` / `LogisticRegression(C=1/alpha)`. On the pilot (all 305 snapshots, 124 tasks,
grouped 5-fold) the forest measurably helps: R2 of U 0.71 vs 0.28-0.54 for ridge (alpha 1-100),
quadrant accuracy 0.66 vs 0.50-0.60 (two fold seeds).

Cross-validation is `GroupKFold` grouped by `task_id` (every snapshot of a task on one side:
snapshots of one episode share most of their text), with `n_folds` capped by the number of tasks.
The final models are fitted on all the given records and saved without pickle: `features.json` (the
`FeatureSpec`), `models.json` (which inputs each target uses) and one skops file per target, loaded
with an explicit list of trusted types.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from sklearn.dummy import DummyClassifier
from sklearn.ensemble import RandomForestClassifier, RandomForestRegressor
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.metrics import accuracy_score, r2_score
from sklearn.model_selection import GroupKFold
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from teachable.evaluation.predictor.features import FeatureSpec, feature_matrix, make_spec
from teachable.core.records import RecordError, write_json

REGRESSION = ("U", "L_local", "ELP_net")
TEXT_ONLY = {"U": True, "L_local": False, "ELP_net": False, "quadrant": False}
FORMAT_VERSION = 1
# Types a saved model may hold beyond skops' defaults (sklearn estimators, numpy arrays): a forest's
# trees.
TRUSTED_TYPES = ["sklearn.tree._tree.Tree"]
FOREST = dict(n_estimators=200, min_samples_leaf=5, max_features=0.3, n_jobs=1)


def targets(records: list[dict]) -> dict[str, np.ndarray]:
    """U, L_local, ELP_net and quadrant of labeled snapshots; a missing label raises RecordError
    naming it."""
    getters = {
        "U": lambda r: r["U"],
        "L_local": lambda r: r["leverage"]["L_local"],
        "ELP_net": lambda r: r["cpt"]["ELP_net"],
        "quadrant": lambda r: r["quadrant"],
    }
    out = {}
    for name, get in getters.items():
        values = []
        for r in records:
            try:
                value = get(r)
            except (KeyError, TypeError):
                value = None
            if value is None:
                raise RecordError(
                    f"snapshot {r.get('snapshot_id', '?')} has no {name} label "
                    "(the predictor needs quadrant snapshots with leverage and CPT)"
                )
            values.append(value)
        out[name] = np.array(values, dtype=object if name == "quadrant" else np.float64)
    return out


def make_model(target: str, kind: str = "forest", alpha: float = 1.0, seed: int = 0):
    """An unfitted model for `target`: kind `forest` or `linear` (alpha = ridge / logistic
    regularisation)."""
    classify = target == "quadrant"
    if kind == "forest":
        return (RandomForestClassifier if classify else RandomForestRegressor)(
            random_state=seed, **FOREST
        )
    if kind == "linear":
        head = (
            LogisticRegression(C=1.0 / alpha, max_iter=5000, random_state=seed)
            if classify
            else Ridge(alpha=alpha)
        )
        return make_pipeline(StandardScaler(), head)
    raise ValueError(f"unknown predictor.model {kind!r} (forest | linear)")


def fit_model(target: str, kind: str, alpha: float, seed: int, x: np.ndarray, y: np.ndarray):
    """`make_model(...)` fitted on (x, y); a classifier shown a single quadrant predicts it (a
    logistic regression cannot be fitted on one class; tiny data and single-quadrant folds
    happen)."""
    if target == "quadrant" and len(np.unique(y.astype(str))) < 2:
        return DummyClassifier(strategy="most_frequent").fit(x, y)
    return make_model(target, kind, alpha, seed).fit(x, y)


def grouped_folds(
    groups: list[str], n_folds: int, seed: int
) -> list[tuple[np.ndarray, np.ndarray]]:
    """(train, test) index pairs; a group (task) is never on both sides. Folds = min(n_folds, number
    of groups)."""
    n_groups = len(set(groups))
    if n_groups < 2:
        raise RecordError(f"cross-validation by task needs at least 2 tasks, got {n_groups}")
    splitter = GroupKFold(n_splits=min(n_folds, n_groups), shuffle=True, random_state=seed)
    return list(splitter.split(np.zeros(len(groups)), groups=groups))


@dataclass
class CrossValidation:
    n_folds: int
    predictions: dict[str, np.ndarray]  # out-of-fold, one per target
    truth: dict[str, np.ndarray]
    r2: dict[str, float]
    accuracy: float
    majority_baseline: float


def cross_validate(
    records: list[dict],
    spec: FeatureSpec,
    n_folds: int,
    seed: int,
    kind: str = "forest",
    alpha: float = 1.0,
) -> CrossValidation:
    """Out-of-fold predictions of every target (each snapshot predicted by models that never saw its
    task)."""
    truth = targets(records)
    matrices = {flag: feature_matrix(records, spec, text_only=flag) for flag in (False, True)}
    folds = grouped_folds([r["task_id"] for r in records], n_folds, seed)
    predictions = {
        t: np.empty(len(records), dtype=object if t == "quadrant" else np.float64) for t in truth
    }
    for train, test in folds:
        for target, y in truth.items():
            x = matrices[TEXT_ONLY[target]]
            predictions[target][test] = fit_model(
                target, kind, alpha, seed, x[train], y[train]
            ).predict(x[test])
    labels, counts = np.unique(truth["quadrant"].astype(str), return_counts=True)
    return CrossValidation(
        n_folds=len(folds),
        predictions=predictions,
        truth=truth,
        r2={t: float(r2_score(truth[t], predictions[t])) for t in REGRESSION},
        accuracy=float(
            accuracy_score(truth["quadrant"].astype(str), predictions["quadrant"].astype(str))
        ),
        majority_baseline=float(counts.max() / counts.sum()),
    )


class Predictor:
    """Fitted models for U, L_local, ELP_net and quadrant over one `FeatureSpec`.

    `Predictor.load(path).predict_elp(records)` scores quadrant snapshot dicts (only their cheap
    fields are read) by predicted ELP_net: the selection stage ranks candidates with it.
    """

    def __init__(
        self, spec: FeatureSpec, models: dict, kind: str, text_only: dict[str, bool] | None = None
    ):
        self.spec, self.models, self.kind = spec, models, kind
        self.text_only = dict(TEXT_ONLY if text_only is None else text_only)

    @classmethod
    def fit(
        cls,
        records: list[dict],
        embedder: str = "hashing",
        embedding_dim: int = 256,
        sentence_model: str | None = None,
        kind: str = "forest",
        alpha: float = 1.0,
        seed: int = 0,
    ) -> Predictor:
        spec = make_spec(records, embedder, embedding_dim, sentence_model)
        truth = targets(records)
        matrices = {flag: feature_matrix(records, spec, text_only=flag) for flag in (False, True)}
        models = {
            t: fit_model(t, kind, alpha, seed, matrices[TEXT_ONLY[t]], y) for t, y in truth.items()
        }
        return cls(spec, models, kind)

    def predict(self, records: list[dict]) -> dict[str, np.ndarray]:
        """Predictions of every target: floats for U, L_local, ELP_net; quadrant names for
        quadrant."""
        if not records:
            return {t: np.empty(0) for t in self.models}
        matrices = {
            flag: feature_matrix(records, self.spec, text_only=flag)
            for flag in set(self.text_only.values())
        }
        return {t: m.predict(matrices[self.text_only[t]]) for t, m in self.models.items()}

    def predict_elp(self, records: list[dict]) -> np.ndarray:
        """Predicted ELP_net of each record (higher = more teachable), shape (len(records),)."""
        if not records:
            return np.empty(0)
        x = feature_matrix(records, self.spec, text_only=self.text_only["ELP_net"])
        return np.asarray(self.models["ELP_net"].predict(x), dtype=np.float64)

    def save(self, directory: str | Path) -> None:
        # here, not at the top: importing skops takes seconds that most importers never use
        import skops.io as sio

        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        for target, model in self.models.items():
            sio.dump(model, directory / f"{target}.skops")
        write_json(directory / "features.json", self.spec.to_json())
        write_json(
            directory / "models.json",
            {
                "format_version": FORMAT_VERSION,
                "kind": self.kind,
                "targets": {
                    t: {"file": f"{t}.skops", "text_only": self.text_only[t]} for t in self.models
                },
            },
        )

    @classmethod
    def load(cls, directory: str | Path) -> Predictor:
        """Reload a saved predictor; a model file holding any type outside skops' defaults and
        TRUSTED_TYPES is refused."""
        import skops.io as sio

        directory = Path(directory)
        spec = FeatureSpec.from_json(json.loads((directory / "features.json").read_text()))
        manifest = json.loads((directory / "models.json").read_text())
        if manifest.get("format_version") != FORMAT_VERSION:
            raise ValueError(
                f"{directory / 'models.json'}: format_version {manifest.get('format_version')} "
                f"is not {FORMAT_VERSION}"
            )
        models, text_only = {}, {}
        for target, entry in manifest["targets"].items():
            path = directory / entry["file"]
            untrusted = set(sio.get_untrusted_types(file=path)) - set(TRUSTED_TYPES)
            if untrusted:
                raise ValueError(f"{path}: refusing to load untrusted types {sorted(untrusted)}")
            models[target] = sio.load(path, trusted=TRUSTED_TYPES)
            text_only[target] = bool(entry["text_only"])
        return cls(spec, models, manifest["kind"], text_only)
