"""Markdown tables, drawn one way for every table the project prints: results.md and the benchmarks."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

Row = TypeVar("Row")


@dataclass(frozen=True)
class Column(Generic[Row]):
    key: str  # the CSV header or JSON key
    title: str  # the markdown header
    value: Callable[[Row], Any]
    text: Callable[[Any], str] = str  # how the markdown shows a value that is not None

    def cell(self, row: Row) -> str:
        """The value's text; an empty cell for None (nothing to show)."""
        value = self.value(row)
        return "" if value is None else self.text(value)


def keyed(key: str, title: str, text: Callable[[Any], str] = str) -> Column[Mapping[str, Any]]:
    """A column of dict rows: the value under its key, an empty cell where the key is missing."""
    return Column(key, title, lambda row: row.get(key), text)


def markdown_table(titles: Sequence[str], rows: Iterable[Sequence[str]]) -> list[str]:
    """The lines of a markdown table: the titles, the rule under them, one line per row of cells."""
    lines = ["| " + " | ".join(titles) + " |", "|" + "---|" * len(titles)]
    return lines + ["| " + " | ".join(row) + " |" for row in rows]


def render_table(columns: Sequence[Column[Row]], rows: Iterable[Row]) -> list[str]:
    """markdown_table() of these rows, one cell per column."""
    return markdown_table(
        [column.title for column in columns], ([column.cell(row) for column in columns] for row in rows)
    )
