"""Lucene BM25 search over the shop's catalogue with pyserini (Anserini), as WebShop's search
engine.

`build_index` writes the products as a pyserini JsonCollection and runs `python -m
pyserini.index.lucene` (raw documents stored); a fingerprint of the documents is kept beside the
index, so building again with the same documents does nothing. `Searcher` wraps one `LuceneSearcher`
per index directory, shared by every environment in the process (forks never copy it), and memoises
query -> ranked ids: a search is deterministic, so replaying a stored state or forking rollouts
repeats no Lucene work. pyserini 0.21 needs Java 17 (`make setup`).
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
import subprocess
import sys
import tempfile
from collections import OrderedDict
from pathlib import Path

log = logging.getLogger(__name__)
FINGERPRINT = "fingerprint.json"


def documents_fingerprint(documents: list[dict]) -> str:
    digest = hashlib.sha256()
    for doc in documents:
        digest.update(json.dumps(doc, sort_keys=True).encode())
        digest.update(b"\n")
    return digest.hexdigest()


def index_is_current(index_dir: str | Path, documents: list[dict]) -> bool:
    stamp = Path(index_dir) / FINGERPRINT
    return stamp.exists() and json.loads(stamp.read_text()).get("sha256") == documents_fingerprint(
        documents
    )


def build_index(documents: list[dict], index_dir: str | Path, threads: int = 1) -> bool:
    """Build a BM25 index of `documents` ({"id", "contents"}) in `index_dir`; False when it was
    already current."""
    index_dir = Path(index_dir)
    if index_is_current(index_dir, documents):
        log.info("index %s is current (%d documents): not rebuilt", index_dir, len(documents))
        return False
    if shutil.which("java") is None:
        raise RuntimeError(
            "pyserini needs a Java 17 runtime: run `make setup` "
            "(Debian/Ubuntu: apt-get install openjdk-17-jre-headless)"
        )
    with tempfile.TemporaryDirectory() as scratch:
        collection = Path(scratch) / "collection"
        collection.mkdir()
        with (collection / "docs.jsonl").open("w", encoding="utf-8") as fh:
            for doc in documents:
                fh.write(json.dumps(doc) + "\n")
        staged = Path(scratch) / "index"
        cmd = [
            sys.executable,
            "-m",
            "pyserini.index.lucene",
            "--collection",
            "JsonCollection",
            "--input",
            str(collection),
            "--index",
            str(staged),
            "--generator",
            "DefaultLuceneDocumentGenerator",
            "--threads",
            str(threads),
            "--storeRaw",
        ]
        done = subprocess.run(cmd, capture_output=True, text=True)
        if done.returncode != 0:
            raise RuntimeError(
                f"pyserini index build failed:\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}"
            )
        (staged / FINGERPRINT).write_text(
            json.dumps({"sha256": documents_fingerprint(documents), "n_documents": len(documents)})
        )
        if index_dir.exists():
            shutil.rmtree(index_dir)
        index_dir.parent.mkdir(parents=True, exist_ok=True)
        shutil.move(str(staged), str(index_dir))
    log.info("indexed %d documents in %s", len(documents), index_dir)
    return True


class Searcher:
    """BM25 over one index: `search(query, k)` -> ranked document ids, memoised (LRU of `cache_size`
    queries)."""

    _open: dict[str, Searcher] = {}  # noqa: RUF012 (process-wide on purpose)

    def __init__(self, index_dir: str | Path, cache_size: int = 100_000):
        # pyserini imports faiss; its probing is noise
        logging.getLogger("faiss.loader").setLevel(logging.WARNING)
        # starts the JVM: only when a shop is used
        from pyserini.search.lucene import LuceneSearcher

        self.index_dir = str(Path(index_dir).resolve())
        if not (Path(self.index_dir) / FINGERPRINT).exists():
            raise FileNotFoundError(
                f"no search index at {index_dir}: run `dvc repro index` (env.name: shop)"
            )
        self.lucene = LuceneSearcher(self.index_dir)
        self.cache_size = cache_size
        self._cache: OrderedDict[tuple[str, int], tuple[str, ...]] = OrderedDict()
        self.n_lucene_calls = 0

    @classmethod
    def shared(cls, index_dir: str | Path) -> Searcher:
        """One searcher per index (directory and contents) for the whole process."""
        stamp = Path(index_dir) / FINGERPRINT
        key = f"{Path(index_dir).resolve()}:{stamp.read_text() if stamp.exists() else ''}"
        if key not in cls._open:
            cls._open[key] = cls(index_dir)
        return cls._open[key]

    def search(self, query: str, k: int = 50) -> tuple[str, ...]:
        key = (query, k)
        hit = self._cache.get(key)
        if hit is not None:
            self._cache.move_to_end(key)
            return hit
        hits = self.search_uncached(query, k)
        self._cache[key] = hits
        if len(self._cache) > self.cache_size:
            self._cache.popitem(last=False)
        return hits

    def search_uncached(self, query: str, k: int = 50) -> tuple[str, ...]:
        self.n_lucene_calls += 1
        if not query.strip():
            return ()
        return tuple(hit.docid for hit in self.lucene.search(query, k=k))
