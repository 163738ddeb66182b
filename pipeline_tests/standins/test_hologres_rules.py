"""The Hologres stand-in refuses or honours each documented Hologres rule (rules and sources: docs/targets.md)."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from psycopg import sql

from pipeline.local.stack import StackEndpoints

MULTI_DML = "SET hg_experimental_enable_transaction = on"


# ----------------------------------------------------------------- helpers


@pytest.fixture
def table(hologres: psycopg.Connection, request: pytest.FixtureRequest) -> Iterator[str]:
    """A table name of the test's own; the table is dropped afterwards if the test made it."""
    name = f"hg_{request.node.name.removeprefix('test_')[:30]}_{uuid.uuid4().hex[:8]}"
    yield name
    if hologres.info.transaction_status != psycopg.pq.TransactionStatus.IDLE:
        hologres.execute("ROLLBACK")
    hologres.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(sql.Identifier(name)))


def rows(connection: psycopg.Connection, query: str) -> list[tuple[Any, ...]]:
    return connection.execute(query).fetchall()


def copy_in(connection: psycopg.Connection, statement: str, data: str) -> int:
    """Run ``COPY ... FROM STDIN`` with ``data``; the rows the server reports."""
    with connection.cursor() as cursor:
        with cursor.copy(statement) as copy:
            copy.write(data)
        return cursor.rowcount


def create_keyed(connection: psycopg.Connection, table: str) -> None:
    connection.execute(f"CREATE TABLE {table} (id int PRIMARY KEY, name text)")


def status(connection: psycopg.Connection) -> str:
    return connection.info.transaction_status.name


# ----------------------------------------------------------------- version functions


def test_version_says_postgresql_11_3_and_not_hologres(hologres: psycopg.Connection) -> None:
    (text,), = rows(hologres, "SELECT version()")
    assert text.startswith("PostgreSQL 11.3 ")
    assert "Hologres" not in text


def test_hg_version_says_hologres_2_2_11_compatible_with_postgresql_11_3(hologres: psycopg.Connection) -> None:
    (text,), = rows(hologres, "SELECT hg_version()")
    assert text.startswith("Hologres 2.2.11 (tag: ")
    assert "compatible with PostgreSQL 11.3" in text


# ----------------------------------------------------------------- transactions


def test_a_block_of_inserts_without_multi_dml_transactions_is_accepted_but_rollback_undoes_nothing(
        hologres: psycopg.Connection, table: str) -> None:
    create_keyed(hologres, table)
    hologres.execute("BEGIN")
    hologres.execute(f"INSERT INTO {table} VALUES (1, 'first')")
    hologres.execute(f"INSERT INTO {table} VALUES (2, 'second')")
    hologres.execute("ROLLBACK")
    assert rows(hologres, f"SELECT id, name FROM {table} ORDER BY id") == [(1, "first"), (2, "second")]


def test_with_hg_experimental_enable_transaction_on_rollback_undoes_both_inserts(
        hologres: psycopg.Connection, table: str) -> None:
    create_keyed(hologres, table)
    hologres.execute(MULTI_DML)
    hologres.execute("BEGIN")
    hologres.execute(f"INSERT INTO {table} VALUES (1, 'first')")
    hologres.execute(f"INSERT INTO {table} VALUES (2, 'second')")
    hologres.execute("ROLLBACK")
    assert rows(hologres, f"SELECT id FROM {table}") == []


def test_with_hg_experimental_enable_transaction_on_commit_keeps_both_inserts(
        hologres: psycopg.Connection, table: str) -> None:
    create_keyed(hologres, table)
    hologres.execute(MULTI_DML)
    hologres.execute("BEGIN")
    hologres.execute(f"INSERT INTO {table} VALUES (1, 'first')")
    hologres.execute(f"INSERT INTO {table} VALUES (2, 'second')")
    hologres.execute("COMMIT")
    assert rows(hologres, f"SELECT id FROM {table} ORDER BY id") == [(1,), (2,)]


def test_show_hg_experimental_enable_transaction_is_off_until_set_on(hologres: psycopg.Connection) -> None:
    before = rows(hologres, "SHOW hg_experimental_enable_transaction")
    hologres.execute(MULTI_DML)
    after = rows(hologres, "SHOW hg_experimental_enable_transaction")
    assert (before, after) == ([("off",)], [("on",)])


def test_insert_after_ddl_in_one_block_is_refused_and_aborts_the_block(
        hologres: psycopg.Connection, table: str) -> None:
    hologres.execute("BEGIN")
    hologres.execute(f"CREATE TABLE {table} (id int PRIMARY KEY, name text)")
    with pytest.raises(psycopg.errors.FeatureNotSupported) as refused:
        hologres.execute(f"INSERT INTO {table} VALUES (1, 'x')")
    assert refused.value.diag.message_primary == "INSERT in ddl transaction is not supported now"
    assert status(hologres) == "INERROR"
    with pytest.raises(psycopg.errors.InFailedSqlTransaction):
        hologres.execute("SELECT 1")


def test_a_refused_ddl_and_dml_block_rolls_back_its_ddl(hologres: psycopg.Connection, table: str) -> None:
    hologres.execute("BEGIN")
    hologres.execute(f"CREATE TABLE {table} (id int PRIMARY KEY, name text)")
    with pytest.raises(psycopg.errors.FeatureNotSupported):
        hologres.execute(f"INSERT INTO {table} VALUES (1, 'x')")
    hologres.execute("ROLLBACK")
    assert rows(hologres, f"SELECT to_regclass('{table}')") == [(None,)]


def test_ddl_after_dml_in_one_block_is_refused_too(hologres: psycopg.Connection, table: str) -> None:
    create_keyed(hologres, table)
    hologres.execute(MULTI_DML)
    hologres.execute("BEGIN")
    hologres.execute(f"INSERT INTO {table} VALUES (1, 'x')")
    with pytest.raises(psycopg.errors.FeatureNotSupported) as refused:
        hologres.execute(f"ALTER TABLE {table} ADD COLUMN extra text")
    assert refused.value.diag.message_primary.endswith("in dml transaction is not supported now")
    assert status(hologres) == "INERROR"


def test_truncate_counts_as_ddl_so_an_insert_after_it_is_refused(hologres: psycopg.Connection, table: str) -> None:
    create_keyed(hologres, table)
    hologres.execute("BEGIN")
    hologres.execute(f"TRUNCATE {table}")
    with pytest.raises(psycopg.errors.FeatureNotSupported) as refused:
        hologres.execute(f"INSERT INTO {table} VALUES (1, 'x')")
    assert refused.value.diag.message_primary == "INSERT in ddl transaction is not supported now"


def test_psycopg_implicit_transaction_with_a_copy_and_an_insert_keeps_both_rows_after_rollback(
        stack: StackEndpoints, hologres: psycopg.Connection, table: str) -> None:
    create_keyed(hologres, table)
    with psycopg.connect(stack.hologres_url) as implicit:  # not autocommit: psycopg sends BEGIN first
        copy_in(implicit, f"COPY {table} FROM STDIN (FORMAT csv)", "1,copied\n")
        implicit.execute(f"INSERT INTO {table} VALUES (2, 'inserted')")
        in_block = status(implicit)
        implicit.rollback()
    assert in_block == "INTRANS"
    assert rows(hologres, f"SELECT id, name FROM {table} ORDER BY id") == [(1, "copied"), (2, "inserted")]


# ----------------------------------------------------------------- table properties


def test_set_table_property_orientation_works_in_the_create_tables_transaction(
        hologres: psycopg.Connection, table: str) -> None:
    hologres.execute("BEGIN")
    hologres.execute(f"CREATE TABLE {table} (id int NOT NULL, name text)")
    hologres.execute(f"CALL set_table_property('{table}', 'orientation', 'column')")
    hologres.execute("COMMIT")
    assert rows(hologres, f"SELECT property_value FROM hologres.hg_table_properties "
                          f"WHERE table_name = '{table}' AND property_key = 'orientation'") == [("column",)]


def test_set_table_property_orientation_outside_the_create_tables_transaction_is_refused(
        hologres: psycopg.Connection, table: str) -> None:
    hologres.execute(f"CREATE TABLE {table} (id int NOT NULL, name text)")
    with pytest.raises(psycopg.errors.FeatureNotSupported) as refused:
        hologres.execute(f"CALL set_table_property('{table}', 'orientation', 'column')")
    assert refused.value.diag.message_primary.startswith(
        "SET_TABLE_PROPERTY and CREATE TABLE statement are not in the same transaction")
    assert rows(hologres, f"SELECT property_key FROM hologres.hg_table_properties "
                          f"WHERE table_name = '{table}' AND property_key = 'orientation'") == []


def test_bitmap_columns_can_be_set_after_the_table_was_created(hologres: psycopg.Connection, table: str) -> None:
    hologres.execute(f"CREATE TABLE {table} (id int NOT NULL, name text)")
    hologres.execute(f"CALL set_table_property('{table}', 'bitmap_columns', 'name')")
    assert rows(hologres, f"SELECT property_value FROM hologres.hg_table_properties "
                          f"WHERE table_name = '{table}' AND property_key = 'bitmap_columns'") == [("name",)]


def test_hg_table_properties_shows_the_set_properties_plus_table_id_and_schema_version(
        hologres: psycopg.Connection, table: str) -> None:
    hologres.execute("BEGIN")
    hologres.execute(f"CREATE TABLE {table} (id int NOT NULL, name text)")
    hologres.execute(f"CALL set_table_property('{table}', 'orientation', 'column')")
    hologres.execute(f"CALL set_table_property('{table}', 'distribution_key', 'id')")
    hologres.execute("COMMIT")
    properties = dict(rows(hologres, f"SELECT property_key, property_value FROM hologres.hg_table_properties "
                                     f"WHERE table_namespace = 'public' AND table_name = '{table}'"))
    assert set(properties) == {"orientation", "distribution_key", "table_id", "schema_version"}
    assert (properties["orientation"], properties["distribution_key"]) == ("column", "id")
    assert properties["table_id"].isdigit() and properties["schema_version"].isdigit()


def test_create_table_with_properties_shows_them_in_hg_table_properties(
        hologres: psycopg.Connection, table: str) -> None:
    hologres.execute(f"CREATE TABLE {table} (a int NOT NULL, b text) "
                     "WITH (orientation = 'column', distribution_key = 'a')")
    properties = dict(rows(hologres, f"SELECT property_key, property_value FROM hologres.hg_table_properties "
                                     f"WHERE table_name = '{table}' AND property_key IN "
                                     "('orientation', 'distribution_key')"))
    assert properties == {"orientation": "column", "distribution_key": "a"}


# ----------------------------------------------------------------- COPY


def test_plain_copy_is_atomic_so_a_bad_row_loads_nothing(hologres: psycopg.Connection, table: str) -> None:
    create_keyed(hologres, table)
    with pytest.raises(psycopg.errors.InvalidTextRepresentation):
        copy_in(hologres, f"COPY {table} FROM STDIN (FORMAT csv)", "1,a\n2,b\nnot-a-number,c\n")
    assert rows(hologres, f"SELECT id FROM {table}") == []


def test_plain_copy_fails_on_a_duplicate_key_and_loads_nothing(hologres: psycopg.Connection, table: str) -> None:
    create_keyed(hologres, table)
    with pytest.raises(psycopg.errors.UniqueViolation):
        copy_in(hologres, f"COPY {table} FROM STDIN (FORMAT csv)", "1,a\n2,b\n1,again\n")
    assert rows(hologres, f"SELECT id FROM {table}") == []


def test_fixed_copy_on_conflict_update_upserts_and_the_last_row_of_a_key_wins(
        hologres: psycopg.Connection, table: str) -> None:
    create_keyed(hologres, table)
    hologres.execute(f"INSERT INTO {table} VALUES (1, 'old'), (3, 'untouched')")
    copy_in(hologres, f"COPY {table} FROM STDIN WITH (STREAM_MODE TRUE, FORMAT csv, ON_CONFLICT 'update')",
            "1,first\n2,new\n1,last\n")
    assert rows(hologres, f"SELECT id, name FROM {table} ORDER BY id") == [(1, "last"), (2, "new"), (3, "untouched")]


def test_fixed_copy_on_conflict_ignore_keeps_the_existing_rows(hologres: psycopg.Connection, table: str) -> None:
    create_keyed(hologres, table)
    hologres.execute(f"INSERT INTO {table} VALUES (1, 'old')")
    copy_in(hologres, f"COPY {table} FROM STDIN WITH (STREAM_MODE TRUE, FORMAT csv, ON_CONFLICT 'ignore')",
            "1,new\n2,added\n")
    assert rows(hologres, f"SELECT id, name FROM {table} ORDER BY id") == [(1, "old"), (2, "added")]


def test_fixed_copy_on_conflict_none_fails_on_a_duplicate_key(hologres: psycopg.Connection, table: str) -> None:
    create_keyed(hologres, table)
    hologres.execute(f"INSERT INTO {table} VALUES (1, 'old')")
    with pytest.raises(psycopg.errors.UniqueViolation):
        copy_in(hologres, f"COPY {table} FROM STDIN WITH (STREAM_MODE TRUE, FORMAT csv, ON_CONFLICT 'none')",
                "1,new\n")
    assert rows(hologres, f"SELECT id, name FROM {table}") == [(1, "old")]


def test_on_conflict_on_a_table_without_primary_key_is_refused(hologres: psycopg.Connection, table: str) -> None:
    hologres.execute(f"CREATE TABLE {table} (id int, name text)")
    with pytest.raises(psycopg.errors.FeatureNotSupported) as refused:
        copy_in(hologres, f"COPY {table} FROM STDIN WITH (STREAM_MODE TRUE, FORMAT csv, ON_CONFLICT 'update')",
                "1,a\n")
    assert "needs a table with a primary key" in refused.value.diag.message_primary
    assert rows(hologres, f"SELECT id FROM {table}") == []


def test_on_conflict_without_stream_mode_is_refused(hologres: psycopg.Connection, table: str) -> None:
    create_keyed(hologres, table)
    with pytest.raises(psycopg.errors.FeatureNotSupported) as refused:
        copy_in(hologres, f"COPY {table} FROM STDIN WITH (FORMAT csv, ON_CONFLICT 'update')", "1,a\n")
    assert "ON_CONFLICT in COPY without STREAM_MODE" in refused.value.diag.message_primary
    assert rows(hologres, f"SELECT id FROM {table}") == []


def test_format_binary_without_stream_mode_is_refused(hologres: psycopg.Connection, table: str) -> None:
    create_keyed(hologres, table)
    with pytest.raises(psycopg.errors.FeatureNotSupported) as refused:
        copy_in(hologres, f"COPY {table} FROM STDIN WITH (FORMAT binary)", "")
    assert refused.value.diag.message_primary == \
        "BINARY import is only supported in fixed copy mode (STREAM_MODE TRUE)"


# ----------------------------------------------------------------- what Hologres does not have


def test_temporary_tables_are_refused(hologres: psycopg.Connection, table: str) -> None:
    with pytest.raises(psycopg.errors.FeatureNotSupported) as refused:
        hologres.execute(f"CREATE TEMP TABLE {table} (id int)")
    assert refused.value.diag.message_primary == "Hologres does not support temporary tables"


def test_lock_table_is_refused(hologres: psycopg.Connection, table: str) -> None:
    create_keyed(hologres, table)
    hologres.execute("BEGIN")
    with pytest.raises(psycopg.errors.FeatureNotSupported) as refused:
        hologres.execute(f"LOCK TABLE {table}")
    assert "does not support explicit locking" in refused.value.diag.message_primary


def test_select_for_update_is_refused(hologres: psycopg.Connection, table: str) -> None:
    create_keyed(hologres, table)
    with pytest.raises(psycopg.errors.FeatureNotSupported) as refused:
        hologres.execute(f"SELECT id FROM {table} FOR UPDATE")
    assert "SELECT ... FOR UPDATE" in refused.value.diag.message_primary


def test_savepoint_is_refused(hologres: psycopg.Connection) -> None:
    hologres.execute("BEGIN")
    with pytest.raises(psycopg.errors.FeatureNotSupported) as refused:
        hologres.execute("SAVEPOINT before_load")
    assert "SAVEPOINT" in refused.value.diag.message_primary


# ----------------------------------------------------------------- table lock of a plain COPY


def waiting_for_lock(observer: psycopg.Connection, pid: int, table: str) -> bool:
    """Whether backend ``pid`` waits for a lock on ``table``."""
    return observer.execute(
        "SELECT count(*) FROM pg_locks WHERE pid = %s AND NOT granted AND relation = %s::regclass",
        (pid, table)).fetchone() == (1,)


def test_a_plain_copy_in_a_multi_dml_block_holds_a_table_lock_until_commit(
        stack: StackEndpoints, hologres: psycopg.Connection, table: str) -> None:
    create_keyed(hologres, table)
    hologres.execute(MULTI_DML)
    hologres.execute("BEGIN")
    copy_in(hologres, f"COPY {table} FROM STDIN (FORMAT csv)", "1,first session\n")
    outcome: dict[str, Any] = {}
    with psycopg.connect(stack.hologres_url, autocommit=True) as second, \
            psycopg.connect(stack.hologres_url, autocommit=True) as observer:

        def second_copy() -> None:
            try:
                outcome["rows"] = copy_in(second, f"COPY {table} FROM STDIN (FORMAT csv)", "2,second session\n")
            except psycopg.Error as error:
                outcome["error"] = error

        worker = threading.Thread(target=second_copy, daemon=True)
        worker.start()
        try:
            deadline = time.monotonic() + 30
            while not waiting_for_lock(observer, second.info.backend_pid, table):
                worker.join(timeout=0.05)  # wakes early only if the second COPY finished: the lock did not hold
                assert worker.is_alive(), f"the second COPY finished while the first held the table: {outcome}"
                assert time.monotonic() < deadline, "the second COPY never waited for the table lock"
        finally:
            hologres.execute("COMMIT")
            worker.join(timeout=30)
    assert not worker.is_alive()
    assert outcome == {"rows": 1}
    assert rows(hologres, f"SELECT id, name FROM {table} ORDER BY id") == [(1, "first session"), (2, "second session")]


@pytest.mark.parametrize("fixed", [False, True])
def test_a_copy_refused_at_its_first_row_while_data_still_streams_fails_and_leaves_the_session_usable(
        hologres: psycopg.Connection, table: str, fixed: bool) -> None:
    # PostgreSQL ends such a COPY (error, ready) before the client's CopyDone: the stand-in must still answer it.
    create_keyed(hologres, table)
    options = "STREAM_MODE TRUE, ON_CONFLICT 'update', FORMAT csv" if fixed else "FORMAT csv"
    with pytest.raises(psycopg.errors.InvalidTextRepresentation):
        copy_in(hologres, f"COPY {table} (id, name) FROM STDIN WITH ({options})",
                "not-a-number,a\n" + "".join(f"{i},n\n" for i in range(100_000)))

    assert hologres.info.transaction_status == psycopg.pq.TransactionStatus.IDLE
    assert copy_in(hologres, f"COPY {table} (id, name) FROM STDIN WITH ({options})", "1,a\n") == 1
    assert rows(hologres, f"SELECT id, name FROM {table}") == [(1, "a")]
