"""The summary: Markdown tables, printed and written to ``docs/soak-latest.md``."""

from __future__ import annotations

import statistics
from collections.abc import Iterable, Sequence

from soak.checks import Check


def table(headers: Sequence[str], rows: Iterable[Sequence[object]]) -> str:
    lines = [
        "| " + " | ".join(headers) + " |",
        "|" + "|".join("---" for _ in headers) + "|",
    ]
    lines += ["| " + " | ".join(str(c).replace("|", "\\|") for c in row) + " |" for row in rows]
    return "\n".join(lines)


def checks_table(checks: list[Check]) -> str:
    return table(
        ["#", "Check", "Result", "Evidence"],
        [(n, c.name, "PASS" if c.ok else "**FAIL**", c.detail) for n, c in enumerate(checks, 1)],
    )


def percentile(values: list[float], q: float) -> float:
    if not values:
        return 0.0
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[round(q) - 1]


def render(
    title: str,
    meta: Sequence[tuple[str, str]],
    checks: list[Check],
    sections: Sequence[tuple[str, str]],
    notes: Sequence[str],
) -> str:
    parts = [f"# {title}", "", table(["", ""], meta), "", "## Checks", "", checks_table(checks)]
    for heading, body in sections:
        parts += ["", f"## {heading}", "", body]
    if notes:
        parts += ["", "## Notes", ""] + [f"- {n}" for n in notes]
    return "\n".join(parts) + "\n"
