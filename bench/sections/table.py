"""What every section returns: one table, printed as markdown and stored as JSON."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from mdgan_dist.experiments.tables import Column, render_table


@dataclass
class Table:
    title: str
    columns: list[Column[Any]]
    rows: list[dict[str, Any]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    summary: dict[str, Any] = field(default_factory=dict)  # headline figures, in the JSON only

    def markdown(self) -> str:
        lines = [f"### {self.title}", "", *render_table(self.columns, self.rows)]
        return "\n".join([*lines, "", *self.notes]).rstrip() + "\n"

    def to_json(self) -> dict[str, Any]:
        return {"title": self.title, "rows": self.rows, "notes": self.notes, **self.summary}


def range_column(key: str, title: str, low: str, high: str, show: Callable[[float], str]) -> Column[Any]:
    """A row's range as "low-high", from its keys `low` and `high`, each end shown by `show`."""
    return Column(key, title, lambda row: f"{show(row[low])}-{show(row[high])}")
