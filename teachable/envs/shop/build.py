"""Build the shop the environment runs on: the catalogue (generated, or WebShop's files) and its
BM25 index.

Writes `products.jsonl`, `goals.jsonl` (WebShop's instructions only; generated goals are drawn per
task seed), `index/` (Lucene, raw documents stored) and `meta.json`. The index is rebuilt only when
the documents change.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from teachable.envs.search import build_index, documents_fingerprint
from teachable.envs.shop.catalog import generate_catalog, load_webshop, write_catalog


def build_shop(params, out_dir: str | Path) -> dict:
    """`params` is a `ShopParams`; returns the meta written to `out_dir/meta.json`."""
    out = Path(out_dir)
    if params.source == "webshop":
        products, goals = load_webshop(params.webshop_items, params.webshop_instructions)
    else:
        products, goals = generate_catalog(params.n_products, params.catalog_seed), []
    documents = [p.document() for p in products]
    write_catalog(out / "products.jsonl", products)
    goals_path = out / "goals.jsonl"
    if goals:
        write_catalog(goals_path, goals)
    else:
        goals_path.unlink(missing_ok=True)
    rebuilt = build_index(documents, out / "index")
    meta = {
        "built": True,
        "source": params.source,
        "n_products": len(products),
        "n_goals": len(goals),
        "documents_sha256": documents_fingerprint(documents),
    }
    (out / "meta.json").write_text(json.dumps(meta, indent=1))
    return {**meta, "index_rebuilt": rebuilt}


def write_unused(out_dir: str | Path, env_name: str) -> dict:
    """For another environment: a marker only (no catalogue, no Java needed), so the DAG stays
    cheap."""
    out = Path(out_dir)
    if out.exists():
        shutil.rmtree(out)  # a shop built before must not be mistaken for this run's
    out.mkdir(parents=True)
    meta = {"built": False, "env": env_name, "note": "the shop is built when env.name is shop"}
    (out / "meta.json").write_text(json.dumps(meta, indent=1))
    return meta
