"""Cheap features of a snapshot: what is known without a single rollout.

A feature row is the student's uncertainty at the state (`U`,
`uncertainty.entropy/margin/top_prob`), the step index, the history length, the level (one-hot, from
`task_id`, e.g. "GoToLocal-123" -> "GoToLocal") and an embedding of the state text (mission +
observation + the history's actions). Leverage, CPT, teacher advice and the quadrant are labels
measured by rollouts or derived from them: they are never read here.

Two embedders: `hashing` (sklearn's stateless `HashingVectorizer` over field-tagged word n-grams,
`embedding_dim` columns, nothing to fit or store) and `sentence-transformers` (a local model
directory, imported lazily, never downloaded).
"""

from __future__ import annotations

import functools
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from teachable.core.records import RecordError

UNCERTAINTY = ("U", "entropy", "margin", "top_prob")
STRUCTURE = ("step_idx", "history_len")
NGRAM_MAX = 2


class EmbedderError(ValueError):
    """An embedder that cannot run here (package not installed, model path missing)."""


def level_of(task_id: str) -> str:
    """The level part of a task id: "GoToLocal-123" -> "GoToLocal"."""
    return task_id.rsplit("-", 1)[0]


def state_text(record: dict) -> str:
    """The state as the embedder sees it: mission, observation and the actions of the shown history,
    each word tagged with its field ("m:go o:purple a:turn_left") so that the same word in different
    fields hashes apart."""
    actions = [h.get("action") or "none" for h in record.get("history", [])]
    parts = [("m", record.get("mission", "")), ("o", record.get("obs", ""))]
    words = [
        f"{tag}:{w}"
        for tag, text in parts
        for w in text.lower().replace(",", " ,").replace(".", " .").split()
    ]
    return " ".join(words + [f"a:{a.replace(' ', '_')}" for a in actions])


@dataclass(frozen=True)
class FeatureSpec:
    """Everything needed to rebuild the feature matrix of new records; saved as `features.json`
    beside the models."""

    embedder: str = "hashing"
    embedding_dim: int = 256
    sentence_model: str | None = None
    levels: tuple[str, ...] = ()
    ngram_max: int = NGRAM_MAX
    uncertainty: tuple[str, ...] = UNCERTAINTY
    structure: tuple[str, ...] = STRUCTURE
    text: str = "mission + obs + history actions, field-tagged words"
    hashing: dict = field(
        default_factory=lambda: {
            "vectorizer": "sklearn HashingVectorizer",
            "token_pattern": r"\S+",
            "lowercase": False,
            "alternate_sign": False,
            "norm": "l2",
        }
    )
    version: int = 1
    feature_sets: dict = field(
        default_factory=lambda: {
            "all": "uncertainty + structure + level one-hot + embedding",
            "text": "structure + level one-hot + embedding (no uncertainty: the U target's inputs)",
        }
    )

    def names(self, text_only: bool = False) -> list[str]:
        head = [] if text_only else list(self.uncertainty)
        return (
            head
            + list(self.structure)
            + [f"level={lvl}" for lvl in self.levels]
            + [f"emb{i}" for i in range(self.embedding_dim)]
        )

    def to_json(self) -> dict:
        return {
            **asdict(self),
            "n_columns": {"all": len(self.names()), "text": len(self.names(text_only=True))},
        }

    @classmethod
    def from_json(cls, obj: dict) -> FeatureSpec:
        obj = {k: v for k, v in obj.items() if k != "n_columns"}
        for key in ("levels", "uncertainty", "structure"):
            obj[key] = tuple(obj[key])
        return cls(**obj)


def _field(record: dict, name: str) -> float:
    if name == "U":
        value = record.get("U")
    elif name == "step_idx":
        value = record.get("step_idx")
    elif name == "history_len":
        value = len(record.get("history", []))
    else:
        value = record.get("uncertainty", {}).get(name)
    if value is None:
        raise RecordError(
            f"snapshot {record.get('snapshot_id', '?')} lacks {name!r} "
            "(a labeled snapshot is needed)"
        )
    return float(value)


@functools.lru_cache(maxsize=2)
def _sentence_model(path: str):
    try:
        from sentence_transformers import SentenceTransformer
    except ImportError:
        raise EmbedderError(
            "predictor.embedder sentence-transformers needs the package: "
            "pip install sentence-transformers (or use embedder: hashing)"
        ) from None
    if not Path(path).is_dir():
        raise EmbedderError(
            f"predictor.sentence_model {path!r} is not a local directory (nothing is downloaded)"
        )
    return SentenceTransformer(path, device="cpu", local_files_only=True)


def check_embedder(embedder: str, sentence_model: str | None) -> None:
    """Fail early, before any work, when the embedder cannot run here."""
    if embedder == "sentence-transformers":
        if not sentence_model:
            raise EmbedderError(
                "predictor.embedder sentence-transformers needs predictor.sentence_model "
                "(a local model directory)"
            )
        _sentence_model(sentence_model)
    elif embedder != "hashing":
        raise EmbedderError(
            f"unknown predictor.embedder {embedder!r} (hashing | sentence-transformers)"
        )


def embed(texts: list[str], spec: FeatureSpec) -> np.ndarray:
    if spec.embedder == "hashing":
        from sklearn.feature_extraction.text import HashingVectorizer

        options = {k: v for k, v in spec.hashing.items() if k != "vectorizer"}
        hasher = HashingVectorizer(
            n_features=spec.embedding_dim, ngram_range=(1, spec.ngram_max), **options
        )
        return hasher.transform(texts).toarray()
    check_embedder(spec.embedder, spec.sentence_model)
    vectors = _sentence_model(spec.sentence_model).encode(
        texts, batch_size=64, show_progress_bar=False
    )
    return np.asarray(vectors, dtype=np.float64)


def make_spec(
    records: list[dict], embedder: str, embedding_dim: int, sentence_model: str | None
) -> FeatureSpec:
    """The spec for a training set: its levels (sorted), and the embedding width (the sentence
    model's own)."""
    check_embedder(embedder, sentence_model)
    if embedder == "sentence-transformers":
        embedding_dim = int(_sentence_model(sentence_model).get_sentence_embedding_dimension())
    levels = tuple(sorted({level_of(r["task_id"]) for r in records}))
    return FeatureSpec(
        embedder=embedder, embedding_dim=embedding_dim, sentence_model=sentence_model, levels=levels
    )


def feature_matrix(records: list[dict], spec: FeatureSpec, text_only: bool = False) -> np.ndarray:
    """One row per record, columns as `spec.names(text_only)`. A level unseen at fit time gets no
    level column set."""
    columns = [] if text_only else list(spec.uncertainty)
    numeric = np.array(
        [[_field(r, c) for c in columns + list(spec.structure)] for r in records], dtype=np.float64
    )
    levels = np.array(
        [[level_of(r["task_id"]) == lvl for lvl in spec.levels] for r in records], dtype=np.float64
    )
    emb = embed([state_text(r) for r in records], spec)
    return np.hstack([numeric.reshape(len(records), -1), levels.reshape(len(records), -1), emb])
