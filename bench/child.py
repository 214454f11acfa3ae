"""What the benchmarks need of the child processes they measure in: a clean environment,
the JSON line a child reports on, and the end of its stderr when it fails."""

from __future__ import annotations

import json
import os
from typing import Any

STDERR_LINES = 15


def child_environment(drop: tuple[str, ...] = ("RAGOPS_",), **values: str) -> dict[str, str]:
    """This process's environment without the variables starting with `drop`, plus `values`:
    a child sees the settings the benchmark gives it, not the ones of this shell."""
    env = {name: value for name, value in os.environ.items() if not name.startswith(drop)}
    env.update(values)
    return env


def reported(stdout: str) -> Any:
    """The JSON a child printed as its last line (libraries may print before it)."""
    return json.loads(stdout.strip().splitlines()[-1])


def stderr_tail(stderr: str, lines: int = STDERR_LINES) -> str:
    """The last `lines` lines of a failed child's stderr, where its traceback ends."""
    return "\n".join(stderr.strip().splitlines()[-lines:])
