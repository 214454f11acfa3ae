from __future__ import annotations

import json

import psycopg
import pytest

from ragops.db.database import url_from_secret_string
from ragops.errors import DatabaseSetupError


def test_rds_secret_json_becomes_a_conninfo_with_tls() -> None:
    secret = json.dumps(
        {
            "username": "app",
            "password": "p@ss word",
            "host": "db.example",
            "port": 6432,
            "dbname": "rag",
            "engine": "postgres",
        }
    )
    info = psycopg.conninfo.conninfo_to_dict(url_from_secret_string("arn:x", secret))
    assert info == {
        "host": "db.example",
        "port": "6432",
        "user": "app",
        "password": "p@ss word",
        "dbname": "rag",
        "sslmode": "require",
    }


def test_secret_holding_a_url_is_used_as_is() -> None:
    url = "postgresql://app:pw@db.example:5432/rag"
    assert url_from_secret_string("arn:x", url) == url


def test_secret_without_a_login_names_the_secret_and_the_fields() -> None:
    with pytest.raises(DatabaseSetupError, match=r"arn:x.*username, password and host"):
        url_from_secret_string("arn:x", json.dumps({"host": "db"}))
