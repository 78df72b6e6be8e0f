"""The retail database in tau-bench's schema: generation, JSON files, and a copy-on-write view.

A database is a plain dict {"products", "users", "orders"} exactly as tau-bench's retail
`data/*.json` files hold them, so tau-bench's own data loads into the same code (`taubench.py`).
`generate_db` draws one deterministically from small built-in word lists. Episodes never mutate it:
a `DBView` keeps an episode's changes in an overlay {(table, key): record} (records are replaced
whole, never changed in place), so forking a view copies only that overlay, and `DBView.hash()`
covers only the records that differ from the base (the same final state hashes equal however it was
reached).
"""

from __future__ import annotations

import hashlib
import itertools
import json
import random
from pathlib import Path

TABLES = ("products", "users", "orders")

# product type -> (base price, {option: values}); option values are distinct across a product's
# options
PRODUCT_TYPES: dict[str, tuple[float, dict[str, list[str]]]] = {
    "T-Shirt": (
        45.0,
        {
            "color": ["black", "white", "blue", "purple"],
            "size": ["S", "M", "L", "XL"],
            "material": ["cotton", "polyester"],
        },
    ),
    "Water Bottle": (
        40.0,
        {
            "capacity": ["500ml", "750ml", "1000ml"],
            "material": ["glass", "plastic", "steel"],
            "color": ["red", "blue", "green"],
        },
    ),
    "Desk Lamp": (
        120.0,
        {
            "color": ["black", "white", "silver"],
            "brightness": ["low", "medium", "high"],
            "power source": ["battery", "USB", "AC adapter"],
        },
    ),
    "Office Chair": (
        480.0,
        {
            "material": ["fabric", "leather", "mesh"],
            "color": ["black", "gray", "blue"],
            "armrest": ["fixed", "adjustable", "none"],
        },
    ),
    "Hiking Boots": (
        230.0,
        {
            "size": ["7", "8", "9", "10", "11"],
            "material": ["leather", "synthetic"],
            "waterproof": ["yes", "no"],
        },
    ),
    "Electric Kettle": (
        150.0,
        {
            "capacity": ["1L", "1.5L", "2L"],
            "material": ["plastic", "glass", "steel"],
            "color": ["white", "black", "silver"],
        },
    ),
    "Wireless Earbuds": (
        180.0,
        {
            "color": ["black", "white", "blue"],
            "battery life": ["4 hours", "6 hours", "8 hours"],
            "water resistance": ["IPX4", "IPX7", "none"],
        },
    ),
    "Backpack": (
        90.0,
        {
            "color": ["black", "navy", "green", "gray"],
            "size": ["small", "medium", "large"],
            "material": ["nylon", "polyester", "leather"],
        },
    ),
    "Yoga Mat": (
        60.0,
        {
            "thickness": ["4mm", "6mm", "8mm"],
            "material": ["PVC", "TPE", "natural rubber"],
            "color": ["pink", "blue", "green", "black"],
        },
    ),
    "Coffee Maker": (
        210.0,
        {
            "color": ["black", "silver", "white"],
            "capacity": ["4 cups", "8 cups", "12 cups"],
            "type": ["drip", "espresso", "french press"],
        },
    ),
    "Bookshelf": (
        320.0,
        {
            "material": ["wood", "metal", "glass"],
            "color": ["brown", "white", "black"],
            "height": ["3 ft", "4 ft", "5 ft", "6 ft"],
        },
    ),
    "Running Shoes": (
        130.0,
        {
            "size": ["7", "8", "9", "10", "11"],
            "color": ["black", "white", "red", "yellow"],
            "sole": ["rubber", "EVA"],
        },
    ),
    "Sunglasses": (
        110.0,
        {
            "frame color": ["black", "brown", "silver"],
            "lens color": ["green", "gray", "blue"],
            "lens type": ["polarized", "non-polarized"],
        },
    ),
    "Headphones": (
        250.0,
        {
            "type": ["on-ear", "over-ear", "in-ear"],
            "connectivity": ["wired", "wireless"],
            "color": ["black", "white", "red", "blue"],
        },
    ),
    "Jigsaw Puzzle": (
        40.0,
        {
            "pieces": ["500", "1000", "1500", "2000"],
            "theme": ["animals", "art", "fantasy", "landscape"],
            "difficulty level": ["beginner", "intermediate", "expert"],
        },
    ),
    "Skateboard": (
        190.0,
        {
            "deck material": ["maple", "bamboo", "plastic"],
            "length": ["28 inch", "31 inch", "34 inch"],
            "design": ["plain", "graphic", "custom"],
        },
    ),
    "Garden Hose": (
        80.0,
        {
            "length": ["25ft", "50ft", "100ft"],
            "material": ["rubber", "vinyl", "latex"],
            "color": ["green", "blue", "black"],
        },
    ),
    "Smart Watch": (
        320.0,
        {
            "color": ["black", "silver", "gold"],
            "band material": ["silicone", "leather", "metal"],
            "display": ["AMOLED", "LCD"],
        },
    ),
    "Bluetooth Speaker": (
        120.0,
        {
            "color": ["black", "blue", "red", "green"],
            "battery life": ["10 hours", "20 hours"],
            "water resistance": ["yes", "no"],
        },
    ),
    "Pet Bed": (
        170.0,
        {
            "size": ["small", "medium", "large"],
            "material": ["memory foam", "polyester", "fleece"],
            "color": ["beige", "gray", "brown"],
        },
    ),
    "Air Purifier": (
        450.0,
        {
            "room size": ["small", "medium", "large"],
            "filter type": ["HEPA", "carbon", "ionic"],
            "features": ["quiet operation", "night mode", "smart sensors"],
        },
    ),
    "Laptop": (
        1400.0,
        {
            "screen size": ["13-inch", "15-inch", "17-inch"],
            "processor": ["i5", "i7", "i9"],
            "storage": ["256GB", "512GB", "1TB"],
        },
    ),
    "Tea Kettle": (
        90.0,
        {
            "material": ["stainless steel", "ceramic", "cast iron"],
            "capacity": ["1 liter", "1.5 liters", "2 liters"],
            "stovetop compatibility": ["gas", "electric", "induction"],
        },
    ),
    "Action Camera": (
        470.0,
        {
            "resolution": ["1080p", "4K", "5K"],
            "waterproof": ["yes", "no"],
            "color": ["black", "silver"],
        },
    ),
}
ADJECTIVES = [
    "Compact",
    "Deluxe",
    "Classic",
    "Urban",
    "Outdoor",
    "Premium",
    "Travel",
    "Studio",
    "Everyday",
    "Pro",
    "Eco",
    "Sport",
    "Family",
    "Mini",
    "Ultra",
    "Retro",
]
FIRST_NAMES = [
    "Mia",
    "Liam",
    "Olivia",
    "Noah",
    "Emma",
    "Yusuf",
    "Sofia",
    "Omar",
    "Aarav",
    "Chen",
    "Fatima",
    "Lucas",
    "Amelia",
    "Ethan",
    "Isabella",
    "Mei",
    "Raj",
    "Ava",
    "James",
    "Harper",
    "Mason",
    "Yara",
    "Ivan",
    "Lei",
    "Anya",
    "Daiki",
    "Nora",
    "Sven",
    "Zara",
    "Mateo",
]
LAST_NAMES = [
    "Garcia",
    "Rossi",
    "Kovacs",
    "Khan",
    "Li",
    "Moore",
    "Lopez",
    "Thomas",
    "Martin",
    "Anderson",
    "Wilson",
    "Johansson",
    "Ahmed",
    "Silva",
    "Kim",
    "Patel",
    "Nguyen",
    "Muller",
    "Sato",
    "Brown",
    "Dubois",
    "Novak",
    "Santos",
    "Ito",
    "Jensen",
    "Hernandez",
    "Costa",
    "Okafor",
    "Berg",
    "Wright",
]
STREETS = [
    "Main Street",
    "Oak Avenue",
    "Elm Street",
    "River Road",
    "Cedar Avenue",
    "Hillcrest Drive",
    "Maple Drive",
    "Broadway",
    "Pine Lane",
    "Lakeview Drive",
    "Park Avenue",
    "Willow Lane",
    "Sunset Drive",
    "Chestnut Street",
]
CITIES = [
    ("New York", "NY", "100"),
    ("Austin", "TX", "787"),
    ("Dallas", "TX", "752"),
    ("San Francisco", "CA", "941"),
    ("Los Angeles", "CA", "900"),
    ("Seattle", "WA", "981"),
    ("Chicago", "IL", "606"),
    ("Denver", "CO", "802"),
    ("Columbus", "OH", "432"),
    ("Philadelphia", "PA", "191"),
    ("Phoenix", "AZ", "850"),
    ("Boston", "MA", "021"),
    ("Charlotte", "NC", "282"),
    ("Jacksonville", "FL", "322"),
]
STATUS_WEIGHTS = {"pending": 0.35, "delivered": 0.4, "processed": 0.15, "cancelled": 0.1}


def _digits(rng: random.Random, n: int, used: set[str]) -> str:
    while True:
        value = str(rng.randint(10 ** (n - 1), 10**n - 1))
        if value not in used:
            used.add(value)
            return value


def product_name(index: int) -> str:
    """A unique product name: the built-in types first, then adjective + type (+ a number past the
    adjectives)."""
    types = list(PRODUCT_TYPES)
    kind, rnd = types[index % len(types)], index // len(types)
    if rnd == 0:
        return kind
    adjective = ADJECTIVES[(rnd - 1) % len(ADJECTIVES)]
    series = (rnd - 1) // len(ADJECTIVES)
    return f"{adjective} {kind}" + (f" {series + 1}" if series else "")


def random_address(rng: random.Random) -> dict:
    city, state, prefix = rng.choice(CITIES)
    width = 5 - len(prefix)
    return {
        "address1": f"{rng.randint(100, 999)} {rng.choice(STREETS)}",
        "address2": f"Suite {rng.randint(100, 999)}",
        "city": city,
        "country": "USA",
        "state": state,
        "zip": f"{prefix}{rng.randint(0, 10**width - 1):0{width}d}",
    }


def generate_db(
    seed: int = 0, n_users: int = 50, orders_per_user: int = 3, n_products: int = 20
) -> dict:
    """A database in tau-bench's retail schema, a pure function of its arguments. Each user gets
    between `orders_per_user - 1` (at least 1) and `orders_per_user` orders of 1-4 distinct
    products."""
    rng = random.Random(seed)
    used: set[str] = set()
    products: dict[str, dict] = {}
    for index in range(n_products):
        name = product_name(index)
        base_price, options = PRODUCT_TYPES[list(PRODUCT_TYPES)[index % len(PRODUCT_TYPES)]]
        combos = list(itertools.product(*options.values()))
        chosen = rng.sample(combos, min(len(combos), rng.randint(3, 5)))
        product_id = _digits(rng, 10, used)
        variants = {}
        for i, combo in enumerate(chosen):
            item_id = _digits(rng, 10, used)
            variants[item_id] = {
                "item_id": item_id,
                "options": dict(zip(options, combo)),
                "available": i < 2 or rng.random() < 0.75,
                "price": round(base_price * rng.uniform(0.8, 1.2), 2),
            }
        products[product_id] = {"name": name, "product_id": product_id, "variants": variants}
    product_ids = list(products)

    users: dict[str, dict] = {}
    orders: dict[str, dict] = {}
    identities: set[tuple[str, str, str]] = set()
    for _ in range(n_users):
        while True:
            first, last = rng.choice(FIRST_NAMES), rng.choice(LAST_NAMES)
            address = random_address(rng)
            user_id = f"{first.lower()}_{last.lower()}_{rng.randint(1000, 9999)}"
            email = f"{first.lower()}.{last.lower()}{rng.randint(1000, 9999)}@example.com"
            key = (first.lower(), last.lower(), address["zip"])
            if user_id not in users and key not in identities and email not in used:
                identities.add(key)
                used.add(email)
                break
        methods: dict[str, dict] = {}
        for source in rng.sample(["credit_card", "paypal", "gift_card"], rng.randint(1, 3)):
            pm_id = f"{source}_{_digits(rng, 7, used)}"
            if source == "credit_card":
                methods[pm_id] = {
                    "source": source,
                    "brand": rng.choice(["visa", "mastercard"]),
                    "last_four": f"{rng.randint(0, 9999):04d}",
                    "id": pm_id,
                }
            elif source == "gift_card":
                methods[pm_id] = {
                    "source": source,
                    "balance": float(rng.randint(0, 300)),
                    "id": pm_id,
                }
            else:
                methods[pm_id] = {"source": source, "id": pm_id}
        user = {
            "user_id": user_id,
            "name": {"first_name": first, "last_name": last},
            "address": address,
            "email": email,
            "payment_methods": methods,
            "orders": [],
        }
        for _ in range(rng.randint(max(1, orders_per_user - 1), orders_per_user)):
            order_id = f"#W{_digits(rng, 7, used)}"
            items = []
            for product_id in rng.sample(product_ids, min(len(product_ids), rng.randint(1, 4))):
                product = products[product_id]
                variant = product["variants"][rng.choice(list(product["variants"]))]
                items.append(
                    {
                        "name": product["name"],
                        "product_id": product_id,
                        "item_id": variant["item_id"],
                        "price": variant["price"],
                        "options": dict(variant["options"]),
                    }
                )
            status = rng.choices(list(STATUS_WEIGHTS), weights=list(STATUS_WEIGHTS.values()))[0]
            pm_id = rng.choice(list(methods))
            total = round(sum(item["price"] for item in items), 2)
            history = [{"transaction_type": "payment", "amount": total, "payment_method_id": pm_id}]
            fulfillments = []
            if status in ("delivered", "processed"):
                fulfillments = [
                    {
                        "tracking_id": [_digits(rng, 12, used)],
                        "item_ids": [i["item_id"] for i in items],
                    }
                ]
            order = {
                "order_id": order_id,
                "user_id": user_id,
                "address": dict(rng.choice([address, address, random_address(rng)])),
                "items": items,
                "fulfillments": fulfillments,
                "status": status,
                "payment_history": history,
            }
            if status == "cancelled":
                order["cancel_reason"] = rng.choice(["no longer needed", "ordered by mistake"])
                history.append(
                    {"transaction_type": "refund", "amount": total, "payment_method_id": pm_id}
                )
            orders[order_id] = order
            user["orders"].append(order_id)
        users[user_id] = user
    return {"products": products, "users": users, "orders": orders}


def db_json(db: dict) -> str:
    """The canonical JSON of a database (sorted keys): equal databases give byte-identical text."""
    return json.dumps(db, sort_keys=True, separators=(",", ":"))


def save_db(db: dict, directory: str | Path) -> None:
    """Write the database as tau-bench's three files (users.json, orders.json, products.json)."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    for table in TABLES:
        (directory / f"{table}.json").write_text(json.dumps(db[table], indent=1, sort_keys=True))


def load_db(directory: str | Path) -> dict:
    """Read tau-bench's three files (ours or tau-bench's own `data/` folder)."""
    directory = Path(directory)
    return {table: json.loads((directory / f"{table}.json").read_text()) for table in TABLES}


def _canonical(obj) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"))


class DBView:
    """An episode's copy-on-write view of a base database: reads go through the overlay, writes
    replace whole records in it. The base is shared and never mutated."""

    __slots__ = ("base", "overlay")

    def __init__(self, base: dict, overlay: dict | None = None):
        self.base = base
        self.overlay: dict[tuple[str, str], dict] = overlay if overlay is not None else {}

    def get(self, table: str, key: str) -> dict | None:
        """The record (read-only: copy it before changing it, then `put` the copy)."""
        record = self.overlay.get((table, key))
        return record if record is not None else self.base[table].get(key)

    def has(self, table: str, key: str) -> bool:
        return (table, key) in self.overlay or key in self.base[table]

    def put(self, table: str, key: str, record: dict) -> None:
        self.overlay[(table, key)] = record

    def keys(self, table: str) -> list[str]:
        extra = [k for (t, k) in self.overlay if t == table and k not in self.base[table]]
        return [*self.base[table], *extra]

    def items(self, table: str):
        for key in self.keys(table):
            yield key, self.get(table, key)

    def copy(self) -> DBView:
        return DBView(self.base, dict(self.overlay))

    def changes(self) -> list[tuple[str, str, dict]]:
        """The overlay's records that differ from the base, sorted by (table, key)."""
        return [
            (t, k, rec)
            for (t, k), rec in sorted(self.overlay.items())
            if self.base[t].get(k) != rec
        ]

    def hash(self) -> str:
        """sha256 over the canonical JSON of the changed records: equal for equal final states."""
        return hashlib.sha256(_canonical([list(c) for c in self.changes()]).encode()).hexdigest()[
            :32
        ]

    def to_db(self) -> dict:
        """The full database this view shows (a fresh dict; for export and checks)."""
        return {table: {key: rec for key, rec in self.items(table)} for table in TABLES}
