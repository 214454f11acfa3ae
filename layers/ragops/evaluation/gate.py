"""The regression gate: each mode's metrics against a baseline, within a tolerance.

A baseline has the shape of the `--json` output; only its metrics are read: the top-level
ones for the default mode, and those under "modes" for each mode. Latency is never gated.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ragops.errors import EvalDataError
from ragops.evaluation.metrics import METRICS
from ragops.evaluation.run import DEFAULT_MODE, MODES

GATED = tuple(METRICS)
# Figures are rounded to 4 decimals; this keeps float noise from failing an exact tie.
EPSILON = 1e-9

Scores = dict[str, dict[str, float]]  # mode -> metric -> value


@dataclass(frozen=True)
class Regression:
    mode: str
    metric: str
    current: float
    baseline: float
    tolerance: float

    def __str__(self) -> str:
        return (
            f"{self.mode} {self.metric}: {self.current:.4f}, below the baseline "
            f"{self.baseline:.4f} - tolerance {self.tolerance:g}"
        )


def read_baseline(path: Path) -> Scores:
    """The gated metrics a baseline file holds, by mode."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise EvalDataError(f"{path}: no such baseline file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise EvalDataError(f"{path}: cannot read the baseline: {exc}") from None
    except json.JSONDecodeError as exc:
        raise EvalDataError(f"{path}:{exc.lineno}: not valid JSON: {exc.msg}") from None
    if not isinstance(data, dict):
        raise EvalDataError(f"{path}: a baseline is a JSON object, as `ragops eval --json` prints")
    scores: Scores = {}
    default = data.get("mode", DEFAULT_MODE)
    top = _metrics(path, data, "")
    if top:
        scores[str(default)] = top
    modes = data.get("modes", {})
    if not isinstance(modes, dict):
        raise EvalDataError(f'{path}: "modes" must be an object of mode -> metrics')
    for mode, figures in modes.items():
        if not isinstance(figures, dict):
            raise EvalDataError(f'{path}: "modes.{mode}" must be an object of metrics')
        scores.setdefault(mode, {}).update(_metrics(path, figures, f"modes.{mode}."))
    unknown = sorted(set(scores) - set(MODES))
    if unknown:
        raise EvalDataError(
            f"{path}: unknown mode(s) {', '.join(unknown)}; the modes are {', '.join(MODES)}"
        )
    if not any(scores.values()):
        raise EvalDataError(f"{path}: no metrics to compare ({', '.join(GATED)})")
    return scores


def _metrics(path: Path, figures: dict[str, Any], where: str) -> dict[str, float]:
    found = {}
    for metric in GATED:
        if metric not in figures:
            continue
        value = figures[metric]
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise EvalDataError(f'{path}: "{where}{metric}" must be a number, got {value!r}')
        found[metric] = float(value)
    return found


def regressions(result: dict[str, Any], baseline: Scores, tolerance: float) -> list[Regression]:
    """Every gated metric that fell below its baseline figure less the tolerance."""
    current: dict[str, dict[str, float]] = result["modes"]
    return [
        Regression(mode, metric, current[mode][metric], expected, tolerance)
        for mode, figures in baseline.items()
        for metric, expected in figures.items()
        if current[mode][metric] < expected - tolerance - EPSILON
    ]


def baseline_json(result: dict[str, Any]) -> dict[str, Any]:
    """What a new baseline keeps of a result: metrics and what they were measured on."""
    kept = ("mode", "queries", "corpus_documents", "chunks", "dataset", "settings")
    return {
        **{metric: result[metric] for metric in GATED},
        **{key: result[key] for key in kept},
        "modes": {
            mode: {metric: figures[metric] for metric in GATED}
            for mode, figures in result["modes"].items()
        },
    }


def write_baseline(result: dict[str, Any], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(baseline_json(result), indent=2) + "\n", encoding="utf-8")
