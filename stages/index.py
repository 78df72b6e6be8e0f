"""Stage `index`: build the shop's catalogue and its Lucene BM25 index (pyserini), when env.name is
shop.

Outputs `data/shop/` (`products.jsonl`, `goals.jsonl` for WebShop's instructions, `index/`,
`meta.json`). For any other environment it writes only `data/shop/meta.json` (a marker: no
catalogue, no Java), so the DAG stays cheap.
"""

from __future__ import annotations

import logging

from teachable import stage
from teachable.core.params import Params
from teachable.envs.shop.build import build_shop, write_unused
from teachable.core.tracking import stage_run

OUT = "data/shop"
log = logging.getLogger(__name__)


def main(params: Params) -> None:
    if params.env.name != "shop":
        write_unused(OUT, params.env.name)  # no MLflow run either: nothing was built
        return
    with stage_run("index", params.model_dump(mode="json", include={"shop"})) as mlflow:
        meta = build_shop(params.shop, OUT)
        log.info(
            "shop: %d products, %d listed goals, index %s",
            meta["n_products"],
            meta["n_goals"],
            "rebuilt" if meta["index_rebuilt"] else "unchanged",
        )
        mlflow.log_metrics(
            {
                "n_products": meta["n_products"],
                "n_goals": meta["n_goals"],
                "index_rebuilt": int(meta["index_rebuilt"]),
            }
        )


if __name__ == "__main__":
    stage.run(main)
