"""Charts for the benchmark pages as Mermaid `xychart-beta` blocks, which GitHub renders.

Mermaid's XY chart has no legend: each series gets a fixed colour from `PALETTE`, and a
chart with more than one series is followed by a line naming them by colour.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

# (hex, name) in plotting order: the first series is drawn in the first colour.
PALETTE = (
    ("#4e79a7", "blue"),
    ("#f28e2b", "orange"),
    ("#59a14f", "green"),
    ("#e15759", "red"),
    ("#b07aa1", "purple"),
    ("#9c755f", "brown"),
)


@dataclass(frozen=True)
class Series:
    label: str
    values: Sequence[float]
    kind: Literal["bar", "line"] = "line"


def xychart(
    title: str,
    x_labels: Sequence[str],
    y_label: str,
    series: Sequence[Series],
    y_range: tuple[float, float] | None = None,
    x_label: str | None = None,
) -> str:
    """A fenced Mermaid block plotting `series` over the categories `x_labels`.

    The y axis runs from 0 to a round number above the largest value unless `y_range`
    is given (Mermaid's own range would start at the smallest value, hiding the bars').
    """
    if not series or len(series) > len(PALETTE):
        raise ValueError(f"a chart plots 1 to {len(PALETTE)} series, not {len(series)}")
    for one in series:
        if len(one.values) != len(x_labels):
            raise ValueError(f"{one.label}: {len(one.values)} values for {len(x_labels)} labels")
    low, high = y_range or (0.0, _round_up(max(v for s in series for v in s.values)))
    colours = ", ".join(hex_code for hex_code, _ in PALETTE[: len(series)])
    axis = f"{_quoted(x_label)} " if x_label else ""
    lines = [
        "```mermaid",
        "---",
        "config:",
        "  themeVariables:",
        "    xyChart:",
        f'      plotColorPalette: "{colours}"',
        "---",
        "xychart-beta",
        f"  title {_quoted(title)}",
        f"  x-axis {axis}[{', '.join(_quoted(label) for label in x_labels)}]",
        f"  y-axis {_quoted(y_label)} {_number(low)} --> {_number(high)}",
        *(f"  {s.kind} [{', '.join(_number(v) for v in s.values)}]" for s in series),
        "```",
    ]
    if len(series) > 1:
        named = (f"{name}: {s.label}" for s, (_, name) in zip(series, PALETTE, strict=False))
        lines += ["", "*" + "; ".join(named) + ".*"]
    return "\n".join(lines)


def bar_chart(title: str, bars: dict[str, float], y_label: str) -> str:
    """One bar per entry, labelled with its key."""
    return xychart(title, list(bars), y_label, [Series(y_label, list(bars.values()), "bar")])


def _round_up(value: float) -> float:
    """A round number (1, 1.5, 2 ... 8 times a power of ten) at least a tenth above `value`."""
    if value <= 0:
        return 1.0
    target = value * 1.1
    power = 10.0 ** math.floor(math.log10(target))
    steps = (1.0, 1.5, 2.0, 2.5, 3.0, 4.0, 5.0, 6.0, 8.0, 10.0)
    return next(step * power for step in steps if step * power >= target)


def _number(value: float) -> str:
    return f"{value:.3f}".rstrip("0").rstrip(".")


def _quoted(text: str) -> str:
    # Mermaid strings cannot escape a double quote.
    return '"' + text.replace('"', "'") + '"'
