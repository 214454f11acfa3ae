"""RAGOPS_QUERY_CACHE_SIZE: read from the environment, refused when negative."""

from __future__ import annotations

import pydantic
import pytest

from ragops.settings import Settings


def test_the_query_cache_size_comes_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    assert Settings(_env_file=None).query_cache_size == 1024  # type: ignore[call-arg]
    monkeypatch.setenv("RAGOPS_QUERY_CACHE_SIZE", "0")
    assert Settings(_env_file=None).query_cache_size == 0  # type: ignore[call-arg]


def test_a_negative_query_cache_size_is_refused_by_name(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RAGOPS_QUERY_CACHE_SIZE", "-1")
    with pytest.raises(pydantic.ValidationError, match="query_cache_size"):
        Settings(_env_file=None)  # type: ignore[call-arg]
