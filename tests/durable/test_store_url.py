"""The store chosen by path or URL (`durable._backend.open_store`), on the command line
(--data, --store, $DURABLE_STORE), and the PostgreSQL store's own schema checks."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import psycopg
import pytest
from click.testing import CliRunner

import durable
from durable import _pg
from durable._backend import open_store, redact
from durable._store import Store
from durable.cli import main
from tests.conftest import ON_POSTGRES, ROOT, postgres_only
from tests.wfs import basic


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_a_directory_and_an_lmdb_url_open_the_embedded_store(tmp_path: Path) -> None:
    by_path = open_store(tmp_path / "s")
    assert isinstance(by_path, Store)
    assert open_store(f"lmdb://{tmp_path / 's'}") is by_path
    by_path.close()


@pytest.mark.parametrize("url, message", [
    ("mysql://me@db/x", "unknown store URL scheme 'mysql'"),
    ("lmdb://somehost/dir", "names a local directory"),
    ("lmdb://", "names no directory"),
])
def test_a_bad_url_is_refused_by_name(url: str, message: str) -> None:
    with pytest.raises(durable.StoreError, match=message):
        open_store(url)


def test_an_unreachable_server_is_one_line_on_the_command_line(tmp_path: Path) -> None:
    url = f"postgresql://nobody:secret@127.0.0.1:{_free_port()}/x"
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    env.pop("DURABLE_STORE", None)
    done = subprocess.run([sys.executable, "-m", "durable", "--store", url, "list"], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 1
    assert done.stderr.startswith("error: cannot connect to the PostgreSQL store postgresql://nobody:***@127.0.0.1")
    assert "Traceback" not in done.stderr and "secret" not in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1


def test_data_and_store_together_are_a_usage_error(tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["--data", str(tmp_path / "a"), "list", "--store", str(tmp_path / "b")])
    assert result.exit_code == 2
    assert "give the store with --data DIR or --store URL, not both" in result.output
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


def test_store_names_a_directory_too_and_the_environment_names_the_store(tmp_path: Path,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    store = tmp_path / "s"
    client = durable.Client(store)
    client.start(basic.three_steps, 1, id="w")
    by_store = CliRunner().invoke(main, ["--store", str(store), "list"])
    assert by_store.exit_code == 0 and "w" in by_store.output
    monkeypatch.setenv("DURABLE_STORE", f"lmdb://{store}")
    monkeypatch.setenv("DURABLE_DATA", str(tmp_path / "elsewhere"))  # $DURABLE_STORE wins
    by_env = CliRunner().invoke(main, ["list"])
    assert by_env.exit_code == 0 and "w" in by_env.output, by_env.output
    assert not (tmp_path / "elsewhere").exists()
    # --store given while $DURABLE_DATA is set is no conflict: the environment is only a default
    both = CliRunner().invoke(main, ["--store", str(store), "list"])
    assert both.exit_code == 0


def test_the_password_is_not_shown() -> None:
    assert redact("postgresql://me:pw@db:5432/x?sslmode=require") == "postgresql://me:***@db:5432/x?sslmode=require"
    assert redact("postgresql://me@db/x") == "postgresql://me@db/x"


def test_the_driver_missing_is_said_plainly(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_pg, "psycopg", None)
    with pytest.raises(durable.StoreError, match=r"pip install 'durable-workflows\[postgres\]'"):
        open_store("postgresql://me@127.0.0.1/x")


@postgres_only
def test_a_schema_of_a_newer_version_is_refused_and_a_missing_one_not_created(data_dir: str) -> None:
    with pytest.raises(durable.NotAStore, match="no durable store at"):
        open_store(data_dir, create=False)
    store = open_store(data_dir)
    with psycopg.connect(store.url, autocommit=True) as conn:
        versions = [r[0] for r in conn.execute("SELECT version FROM durable_migrations ORDER BY version")]
        assert versions == [v for v, _ in _pg._MIGRATIONS]
        conn.execute("INSERT INTO durable_migrations (version) VALUES (%s)", (_pg.SCHEMA_VERSION + 1,))
    store.close()
    with pytest.raises(durable.StoreFormatError, match="newer durable"):
        open_store(data_dir)


@postgres_only
def test_two_stores_in_one_database_are_apart(data_dir: str) -> None:
    """Each schema is a store of its own, with its own wake-up channel."""
    from tests import _pg_util

    with _pg_util.fresh_schema(os.environ["DURABLE_TEST_STORE"]) as other_url:
        a, b = durable.Client(data_dir), durable.Client(other_url)
        a.start(basic.three_steps, 1, id="only-in-a")
        assert [d.workflow_id for d in a.list()] == ["only-in-a"]
        assert b.list() == []
        assert a._store.channel != b._store.channel  # type: ignore[attr-defined]


def test_on_postgres_the_fixture_gives_a_url(data_dir: str) -> None:
    assert ("://" in data_dir) == ON_POSTGRES
