"""The README documents every setting the service reads."""

from __future__ import annotations

import re
from pathlib import Path

from ragops.settings import Settings

README = Path(__file__).resolve().parents[2] / "README.md"


def test_configuration_table_names_every_setting() -> None:
    documented = set(re.findall(r"`(RAGOPS_[A-Z0-9_]+)`", README.read_text()))
    settings = {f"RAGOPS_{name.upper()}" for name in Settings.model_fields}
    assert sorted(settings - documented) == []
    assert sorted(documented - settings) == []
