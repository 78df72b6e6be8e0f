"""The shop's catalog: products and instructions (goals), generated deterministically or loaded from
WebShop's files.

A product has a category (WebShop's five: beauty, electronics, fashion, food, furniture), a product
type, a title, attributes (e.g. "cotton", "slim fit", "machine wash"), options offered per option
name (size, colour, ...) and a price. A goal names a target product's type, some of its attributes,
one value per option and a price bound, worded as WebShop's instructions are ("i need a slim fit
cotton t-shirt in navy, size medium, and price lower than 30.00 dollars"). Any product that meets a
goal earns the full reward, not only the target.

Generated catalogs draw a goal per task seed (`make_goal`), as BabyAI draws a mission per seed;
WebShop's own instructions are a fixed list, indexed by the seed.
"""

from __future__ import annotations

import json
import math
import random
import re
from pathlib import Path

from pydantic import BaseModel, ConfigDict

CATEGORIES: dict[str, dict] = {
    "beauty": {
        "types": {
            "shampoo": (6, 28),
            "face cream": (9, 60),
            "lip balm": (3, 15),
            "body lotion": (6, 30),
            "sunscreen": (7, 35),
        },
        "attributes": [
            ["for dry skin", "for oily skin", "for sensitive skin", "for all skin types"],
            ["paraben free", "sulfate free", "fragrance free", "alcohol free"],
            ["vegan", "cruelty free", "organic", "natural ingredients"],
            ["long lasting", "hydrating", "travel size", "dermatologist tested"],
        ],
        "options": {
            "size": ["2 oz", "4 oz", "8 oz", "16 oz"],
            "scent": ["unscented", "lavender", "coconut", "vanilla", "citrus"],
        },
    },
    "electronics": {
        "types": {
            "headphones": (15, 250),
            "phone charger": (8, 45),
            "bluetooth speaker": (20, 180),
            "phone case": (6, 40),
            "usb cable": (5, 25),
        },
        "attributes": [
            ["wireless", "usb-c", "lightning connector", "aux input"],
            ["fast charging", "long battery life", "low power", "solar powered"],
            ["waterproof", "shockproof", "dustproof", "scratch resistant"],
            ["noise cancelling", "portable", "hands free", "high definition"],
        ],
        "options": {
            "color": ["black", "white", "silver", "blue", "red"],
            "pack": ["1 pack", "2 pack", "3 pack"],
        },
    },
    "fashion": {
        "types": {
            "t-shirt": (8, 40),
            "jeans": (20, 90),
            "hoodie": (18, 70),
            "jacket": (30, 160),
            "dress": (20, 120),
        },
        "attributes": [
            ["cotton", "polyester", "wool", "linen", "denim"],
            ["slim fit", "relaxed fit", "regular fit", "loose fit"],
            ["machine wash", "hand wash", "dry clean only", "quick dry"],
            ["long sleeve", "short sleeve", "casual", "classic"],
        ],
        "options": {
            "size": ["x-small", "small", "medium", "large", "x-large"],
            "color": ["black", "white", "navy", "grey", "olive", "burgundy"],
        },
    },
    "food": {
        "types": {
            "coffee beans": (8, 40),
            "green tea": (4, 25),
            "granola": (4, 20),
            "dark chocolate": (3, 30),
            "trail mix": (5, 25),
        },
        "attributes": [
            ["gluten free", "sugar free", "keto friendly", "non gmo"],
            ["organic", "fair trade", "all natural", "kosher"],
            ["resealable bag", "individually wrapped", "bulk pack", "gift box"],
            ["low calorie", "high protein", "caffeine free", "ready to eat"],
        ],
        "options": {
            "flavor": ["original", "vanilla", "caramel", "mint", "honey"],
            "size": ["6 ounce", "12 ounce", "2 pound", "5 pound"],
        },
    },
    "furniture": {
        "types": {
            "office chair": (60, 400),
            "bookshelf": (40, 300),
            "coffee table": (50, 350),
            "bed frame": (90, 600),
            "nightstand": (30, 200),
        },
        "attributes": [
            ["solid wood", "metal frame", "engineered wood", "bamboo", "tempered glass"],
            ["modern", "rustic", "mid century", "industrial"],
            ["easy assembly", "no assembly required", "foldable", "stackable"],
            ["for living room", "for bedroom", "for home office", "for small spaces"],
        ],
        "options": {
            "color": ["black", "white", "walnut", "oak", "grey"],
            "size": ["small", "medium", "large"],
        },
    },
}
SHOP_LEVELS = ("all", *CATEGORIES)  # a level is a task family: one category, or all of them
BRANDS = [
    "norvik",
    "alpen",
    "brightly",
    "cedar & co",
    "duskwell",
    "everpine",
    "fjordan",
    "goodloom",
    "halcyon",
    "ironleaf",
    "juniper",
    "kestrel",
    "lumen",
    "mossgrove",
    "northbay",
    "oakhurst",
    "pebble",
    "quillon",
    "riverton",
    "saltmarsh",
    "tidewater",
    "umbra",
    "vantage",
    "willow",
    "yarrow",
    "zephyr",
]
TEMPLATES = [
    "i need {what}",
    "i am looking for {what}",
    "i want to buy {what}",
    "find me {what}",
    "i'm searching for {what}",
]


class Product(BaseModel):
    model_config = ConfigDict(frozen=True)

    asin: str  # WebShop's product id; the results page's click label
    category: str
    product_type: str
    title: str
    attributes: list[str]
    options: dict[str, list[str]]
    price: float

    def document(self) -> dict:
        """The search engine's document (pyserini JsonCollection): id + the text BM25 matches."""
        options = " ".join(v for values in self.options.values() for v in values)
        text = f"{self.title}. {self.product_type}. {', '.join(self.attributes)}. {options}"
        return {"id": self.asin, "contents": text}


class Goal(BaseModel):
    model_config = ConfigDict(frozen=True)

    instruction: str
    category: str
    product_type: str
    attributes: list[str]
    options: dict[str, str]  # option name -> the value asked for
    price_upper: float
    # asin of the product the goal was drawn from (any product meeting it is rewarded in full)
    target: str
    query: str  # the search an expert types: the asked-for attributes, the type, the option values


# -- generation ------------------------------------------------------------------------------------
def generate_catalog(n_products: int, seed: int) -> list[Product]:
    """`n_products` products spread over every category and type; the same (n, seed) gives the same
    catalog."""
    rng = random.Random(f"catalog:{seed}")
    kinds = [(cat, ptype) for cat, spec in CATEGORIES.items() for ptype in spec["types"]]
    width = max(5, len(str(n_products)))
    products = []
    for i in range(n_products):
        category, ptype = kinds[i % len(kinds)] if i < len(kinds) else rng.choice(kinds)
        spec = CATEGORIES[category]
        attributes = [rng.choice(group) for group in spec["attributes"]]
        options = {}
        for name, values in spec["options"].items():
            offered = set(rng.sample(values, rng.randint(2, len(values))))
            options[name] = [v for v in values if v in offered]  # catalogue order
        lo, hi = spec["types"][ptype]
        price = round(rng.uniform(lo, hi), 2)
        brand = rng.choice(BRANDS)
        # titles name a couple of attributes, as sellers' titles do
        shown = rng.sample(attributes, 2)
        title = f"{brand} {shown[0]} {shown[1]} {ptype}"
        products.append(
            Product(
                asin=f"b{i:0{width}d}",
                category=category,
                product_type=ptype,
                title=title,
                attributes=attributes,
                options=options,
                price=price,
            )
        )
    return products


def products_of(products: list[Product], level: str) -> list[Product]:
    """The products a level's goals target: one category, or all."""
    return list(products) if level == "all" else [p for p in products if p.category == level]


def price_bound(price: float, rng: random.Random) -> float:
    """A round bound above the price, as WebShop's 'price lower than X dollars'."""
    step = 10 if price < 100 else 50
    return float(math.ceil(price * rng.uniform(1.05, 1.5) / step) * step)


def instruction_text(
    ptype: str, attributes: list[str], options: dict[str, str], bound: float, rng: random.Random
) -> str:
    described = " ".join(a for a in attributes if not a.startswith("for "))
    suffix = " ".join(a for a in attributes if a.startswith("for "))
    what = f"a {described} {ptype}".replace("  ", " ").strip()
    if suffix:
        what += f" {suffix}"
    chosen = ", ".join(
        f"{name} {value}" if name in ("size", "pack") else value for name, value in options.items()
    )
    return rng.choice(TEMPLATES).format(
        what=f"{what} with {chosen}, and price lower than {bound:.2f} dollars"
    )


def make_goal(products: list[Product], seed: int) -> Goal:
    """The goal of task `seed`: a target product, 2-3 of its attributes, one value per option, a
    price bound."""
    rng = random.Random(f"goal:{seed}")
    target = rng.choice(products)
    k = min(len(target.attributes), rng.choice([2, 3]))
    asked = set(rng.sample(target.attributes, k))
    attributes = [a for a in target.attributes if a in asked]
    options = {name: rng.choice(values) for name, values in target.options.items()}
    bound = price_bound(target.price, rng)
    return Goal(
        instruction=instruction_text(target.product_type, attributes, options, bound, rng),
        category=target.category,
        product_type=target.product_type,
        attributes=attributes,
        options=options,
        price_upper=bound,
        target=target.asin,
        query=" ".join([*attributes, target.product_type, *options.values()]),
    )


# -- WebShop's own files ---------------------------------------------------------------------------
def _price(value) -> float:
    """WebShop prices are strings such as '$12.99' or '$10.99 to $15.99' (the lower end is
    taken)."""
    if isinstance(value, (int, float)):
        return float(value)
    found = re.findall(r"\d+(?:\.\d+)?", str(value).replace(",", ""))
    return float(found[0]) if found else 0.0


def load_webshop(
    items_path: str | Path, instructions_path: str | Path | None = None
) -> tuple[list[Product], list[Goal]]:
    """Products from WebShop's `items_shuffle*.json` (a list of {asin, category, name,
    product_category, pricing, customization_options: {name: [{value}]}, Attributes?}) and goals
    from `items_human_ins.json` ({asin: [{ instruction, instruction_attributes, instruction_options,
    price_upper?}]}) or the items' own `instructions`."""
    items = json.loads(Path(items_path).read_text())
    products, by_asin = [], {}
    for item in items:
        asin = str(item["asin"]).lower()
        if asin in by_asin:
            continue
        ptype = str(item.get("product_category", "")).split("›")[-1].strip().lower() or item.get(
            "category", ""
        )
        options = {
            str(name).lower(): [
                str(o["value"] if isinstance(o, dict) else o).lower() for o in values
            ]
            for name, values in (item.get("customization_options") or {}).items()
        }
        product = Product(
            asin=asin,
            category=str(item.get("category", "")).lower(),
            product_type=ptype,
            title=str(item.get("name", asin)).lower(),
            attributes=[str(a).lower() for a in item.get("Attributes", item.get("attributes", []))],
            options=options,
            price=_price(item.get("pricing", item.get("price", 0))),
        )
        products.append(product)
        by_asin[asin] = product
    raw = (
        json.loads(Path(instructions_path).read_text())
        if instructions_path
        else {str(it["asin"]).lower(): it.get("instructions", []) for it in items}
    )
    goals = []
    for asin, entries in raw.items():
        target = by_asin.get(str(asin).lower())
        for entry in entries or []:
            if target is None or not entry.get("instruction"):
                continue
            wanted = [str(o).lower() for o in entry.get("instruction_options", [])]
            chosen = {
                name: v for name, values in target.options.items() for v in values if v in wanted
            }
            attributes = [str(a).lower() for a in entry.get("instruction_attributes", [])]
            goals.append(
                Goal(
                    instruction=str(entry["instruction"]).lower(),
                    category=target.category,
                    product_type=target.product_type,
                    attributes=attributes,
                    options=chosen,
                    price_upper=float(entry.get("price_upper") or 1e9),
                    target=target.asin,
                    query=" ".join([*attributes, target.product_type, *chosen.values()]).strip(),
                )
            )
    return products, goals


# -- storage ---------------------------------------------------------------------------------------
def write_catalog(path: str | Path, items: list[BaseModel]) -> None:
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    with Path(path).open("w", encoding="utf-8") as fh:
        for item in items:
            fh.write(item.model_dump_json() + "\n")


def read_catalog(path: str | Path, model: type[BaseModel]) -> list:
    with Path(path).open(encoding="utf-8") as fh:
        return [model.model_validate_json(line) for line in fh if line.strip()]
