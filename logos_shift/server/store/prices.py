"""The model price table used for cost estimates (USD per million tokens).

Defaults below are list prices at the time of writing and only estimates;
each project overrides or adds models with ``PUT /v1/prices/{model}``.  A model
matches the longest table entry that is a prefix of its name, so
``gpt-4o-mini-2024-07-18`` prices as ``gpt-4o-mini`` and
``ft:gpt-4o-mini:acme::x1`` as ``ft:gpt-4o-mini`` (fine-tuned inference).
A project's own entries win over the defaults.
"""

from __future__ import annotations

import time

import sqlalchemy as sa

from .db import Database
from .schema import prices

DEFAULT_PRICES: dict[str, tuple[float, float]] = {
    "gpt-4o": (2.50, 10.00),
    "gpt-4o-mini": (0.15, 0.60),
    "gpt-4.1": (2.00, 8.00),
    "gpt-4.1-mini": (0.40, 1.60),
    "gpt-4.1-nano": (0.10, 0.40),
    "gpt-3.5-turbo": (0.50, 1.50),
    "o3-mini": (1.10, 4.40),
    "o4-mini": (1.10, 4.40),
    "ft:gpt-4o": (3.75, 15.00),
    "ft:gpt-4o-mini": (0.30, 1.20),
    "ft:gpt-4.1": (3.00, 12.00),
    "ft:gpt-4.1-mini": (0.80, 3.20),
    "ft:gpt-4.1-nano": (0.20, 0.80),
    "ft:gpt-3.5-turbo": (3.00, 6.00),
    "claude-3-haiku": (0.25, 1.25),
    "claude-3-5-haiku": (0.80, 4.00),
    "claude-3-5-sonnet": (3.00, 15.00),
    "claude-3-7-sonnet": (3.00, 15.00),
    "claude-sonnet-4": (3.00, 15.00),
    "claude-opus-4": (15.00, 75.00),
    "claude-3-opus": (15.00, 75.00),
}


def lookup(table: dict[str, tuple[float, float]], model: str | None) -> tuple[float, float] | None:
    """Return the price of ``model``: exact entry, else the longest prefix entry.

    Args:
        table: model → (input, output) USD per million tokens.
        model: model name, or None.

    Returns:
        The price pair, or None when nothing matches.
    """
    if not model:
        return None
    if model in table:
        return table[model]
    best = max((k for k in table if model.startswith(k)), key=len, default=None)
    return None if best is None else table[best]


def effective_table(db: Database, project_id: int) -> dict[str, tuple[float, float]]:
    """Return the defaults overlaid with the project's own prices.

    Args:
        db: the database.
        project_id: the project.

    Returns:
        model → (input, output) USD per million tokens.
    """
    table = dict(DEFAULT_PRICES)
    with db.read() as conn:
        rows = conn.execute(
            sa.select(prices.c.model, prices.c.input_per_mtok, prices.c.output_per_mtok).where(
                prices.c.project_id == project_id
            )
        )
        for model, pin, pout in rows:
            table[str(model)] = (float(pin), float(pout))
    return table


def set_price(db: Database, project_id: int, model: str, pin: float, pout: float) -> None:
    """Create or replace the project's price for ``model``.

    Args:
        db: the database.
        project_id: the project.
        model: model name or prefix.
        pin: USD per million input tokens.
        pout: USD per million output tokens.
    """
    now = time.time()
    with db.write() as conn:
        stmt = db.insert(prices).values(
            project_id=project_id, model=model, input_per_mtok=pin, output_per_mtok=pout,
            updated_at=now,
        )  # fmt: skip
        conn.execute(
            stmt.on_conflict_do_update(
                index_elements=["project_id", "model"],
                set_={"input_per_mtok": pin, "output_per_mtok": pout, "updated_at": now},
            )
        )


def delete_price(db: Database, project_id: int, model: str) -> bool:
    """Remove the project's own price for ``model`` (a default comes back).

    Args:
        db: the database.
        project_id: the project.
        model: model name.

    Returns:
        True if a row was deleted.
    """
    with db.write() as conn:
        result = conn.execute(
            prices.delete().where(prices.c.project_id == project_id, prices.c.model == model)
        )
    return bool(result.rowcount)
