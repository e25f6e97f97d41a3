"""The demo's code-defined tables: a large static ``superstore``, a live ``ticks`` (both for
anyone) and ``targets``, which signed-in users read and staff edit."""

from __future__ import annotations

import asyncio
import datetime as dt
import random
from typing import Any

from django_perspective.api import HostedTable
from django_perspective.tables import perspective_table

SUPERSTORE_ROWS = 100_000

REGIONS = ["Central", "East", "South", "West"]
SEGMENTS = ["Consumer", "Corporate", "Home Office"]
CATEGORIES = {
    "Furniture": ["Bookcases", "Chairs", "Furnishings", "Tables"],
    "Office Supplies": ["Appliances", "Art", "Binders", "Labels", "Paper", "Storage"],
    "Technology": ["Accessories", "Copiers", "Machines", "Phones"],
}
SYMBOLS = ["AAPL", "AMZN", "GOOG", "META", "MSFT", "NFLX", "NVDA", "ORCL", "TSLA", "UBER"]


def superstore_columns(rows: int = SUPERSTORE_ROWS, seed: int = 2017) -> dict[str, list[Any]]:
    """A deterministic sales-like data set: the same ``seed`` always gives the same rows."""
    rng = random.Random(seed)
    start = dt.date(2023, 1, 1)
    categories = list(CATEGORIES)
    columns: dict[str, list[Any]] = {
        name: []
        for name in (
            "Order ID",
            "Order Date",
            "Ship Time",
            "Region",
            "Segment",
            "Category",
            "Sub-Category",
            "Quantity",
            "Sales",
            "Discount",
            "Profit",
            "Returned",
        )
    }
    for i in range(rows):
        category = categories[i % 3]
        order_date = start + dt.timedelta(days=rng.randrange(730))
        quantity = rng.randint(1, 14)
        price = round(rng.uniform(2.0, 900.0), 2)
        discount = rng.choice((0.0, 0.0, 0.1, 0.2, 0.3))
        sales = round(quantity * price * (1 - discount), 2)
        columns["Order ID"].append(f"CA-{i:06d}")
        columns["Order Date"].append(order_date)
        columns["Ship Time"].append(
            dt.datetime.combine(order_date, dt.time(rng.randrange(24), rng.randrange(60)))
            + dt.timedelta(days=rng.randint(1, 6))
        )
        columns["Region"].append(REGIONS[rng.randrange(4)])
        columns["Segment"].append(SEGMENTS[rng.randrange(3)])
        columns["Category"].append(category)
        columns["Sub-Category"].append(rng.choice(CATEGORIES[category]))
        columns["Quantity"].append(quantity)
        columns["Sales"].append(sales)
        columns["Discount"].append(discount)
        columns["Profit"].append(round(sales * rng.uniform(-0.3, 0.45), 2))
        columns["Returned"].append(rng.random() < 0.08)
    return columns


@perspective_table(
    "superstore",
    access="public",
    title="Superstore orders",
    description="100,000 generated orders, 2023-2024: the same rows on every start.",
)
def superstore() -> dict[str, list[Any]]:
    return superstore_columns()


def _tick(rng: random.Random, symbol: str, price: float) -> dict[str, Any]:
    change = round(rng.gauss(0, 0.004) * price, 2)
    return {
        "symbol": symbol,
        "price": round(max(1.0, price + change), 2),
        "change": change,
        "volume": rng.randint(100, 10_000),
        "updated": dt.datetime.now(dt.timezone.utc).replace(tzinfo=None),
    }


@perspective_table("ticks", index="symbol", access="public", title="Live prices")
def ticks() -> list[dict[str, Any]]:
    rng = random.Random(7)
    return [_tick(rng, symbol, 100.0 + 25 * i) for i, symbol in enumerate(SYMBOLS)]


TICKS_PER_SECOND = 5


@perspective_table(
    "targets",
    index="Region",
    access="authenticated",
    editable="staff",
    title="Sales targets",
    description="Signed-in users read it; staff may edit it.",
)
def targets() -> dict[str, list[Any]]:
    return {
        "Region": REGIONS,
        "Target": [7_000_000.0, 7_500_000.0, 6_500_000.0, 8_000_000.0],
        "Owner": ["Ana", "Ben", "Chloe", "Dev"],
        "Reviewed": [False, False, False, False],
    }


@ticks.stream
async def move_prices(table: HostedTable) -> None:
    """Move a few prices several times a second while anyone is connected."""
    rng = random.Random()
    prices = {symbol: 100.0 + 25 * i for i, symbol in enumerate(SYMBOLS)}
    while True:
        rows = [_tick(rng, symbol, prices[symbol]) for symbol in rng.sample(SYMBOLS, 4)]
        for row in rows:
            prices[row["symbol"]] = row["price"]
        await table.aupdate(rows)
        await asyncio.sleep(1 / TICKS_PER_SECOND)
