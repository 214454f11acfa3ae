"""The progress bar the CLI commands show: on stderr, and only when stderr is a terminal."""

from __future__ import annotations

import sys
from typing import Any


def progress_bar(total: int, desc: str, unit: str) -> Any:
    """A tqdm bar (also a context manager), silent when stderr is not a terminal."""
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit=unit, disable=not sys.stderr.isatty(), leave=False)
