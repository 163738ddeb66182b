"""The Redshift stand-in refuses or honours each documented Redshift rule (rules and sources: docs/targets.md)."""

from __future__ import annotations

import gzip
import json
import re
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import psycopg
import pytest
from psycopg import sql

from pipeline.local.stack import StackEndpoints

ROLE = "arn:aws:iam::000000000000:role/redshift-copy"


# ----------------------------------------------------------------- helpers


@pytest.fixture
def table(redshift: psycopg.Connection, request: pytest.FixtureRequest) -> Iterator[str]:
    """A table name of the test's own; the table is dropped afterwards if the test made it."""
    name = f"rs_{request.node.name.removeprefix('test_')[:30]}_{uuid.uuid4().hex[:8]}"
    yield name
    if redshift.info.transaction_status != psycopg.pq.TransactionStatus.IDLE:
        redshift.execute("ROLLBACK")
    redshift.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(sql.Identifier(name)))


@dataclass
class Objects:
    """A prefix of the test's own in the stack's bucket."""

    s3: Any
    bucket: str
    prefix: str

    def put(self, name: str, body: bytes) -> str:
        """Store ``body`` as ``<prefix>/<name>``; its s3:// URL."""
        key = f"{self.prefix}/{name}"
        self.s3.put_object(Bucket=self.bucket, Key=key, Body=body)
        return f"s3://{self.bucket}/{key}"

    def url(self, name: str = "") -> str:
        return f"s3://{self.bucket}/{self.prefix}/{name}"


@pytest.fixture
def objects(stack: StackEndpoints, s3: Any, request: pytest.FixtureRequest) -> Objects:
    return Objects(s3, stack.bucket, f"standins/{request.node.name}/{uuid.uuid4().hex}")


def rows(connection: psycopg.Connection, query: str) -> list[tuple[Any, ...]]:
    return connection.execute(query).fetchall()


def create_people(connection: psycopg.Connection, table: str) -> None:
    connection.execute(f"CREATE TABLE {table} (id bigint, name varchar(5))")


def copy_from(connection: psycopg.Connection, table: str, source: str, options: str = "CSV") -> None:
    connection.execute(f"COPY {table} FROM '{source}' IAM_ROLE '{ROLE}' {options}")


# ----------------------------------------------------------------- version, syntax Redshift does not have


def test_version_reads_postgresql_8_0_2_then_redshift_1_0(redshift: psycopg.Connection) -> None:
    (text,), = rows(redshift, "SELECT version()")
    assert re.match(r"PostgreSQL 8\.0\.2 on \S+, compiled by .*, Redshift 1\.0\.\d+", text), text


def test_copy_from_stdin_is_a_syntax_error(redshift: psycopg.Connection, table: str) -> None:
    create_people(redshift, table)
    with pytest.raises(psycopg.errors.SyntaxError) as refused, redshift.cursor() as cursor, \
            cursor.copy(f"COPY {table} FROM STDIN") as copy:
        copy.write("1|a\n")
    assert refused.value.diag.message_primary == 'syntax error at or near "STDIN"'
    assert rows(redshift, f"SELECT id FROM {table}") == []


def test_insert_on_conflict_is_refused(redshift: psycopg.Connection, table: str) -> None:
    redshift.execute(f"CREATE TABLE {table} (id bigint PRIMARY KEY, name varchar(5))")
    with pytest.raises(psycopg.errors.SyntaxError) as refused:
        redshift.execute(f"INSERT INTO {table} VALUES (1, 'a') ON CONFLICT DO NOTHING")
    assert refused.value.diag.message_primary == 'syntax error at or near "ON"'
    assert rows(redshift, f"SELECT id FROM {table}") == []


def test_a_statement_over_16_mb_is_refused_and_one_under_it_runs(redshift: psycopg.Connection, table: str) -> None:
    create_people(redshift, table)
    name = "x" * (8 << 20)
    for cursor in (psycopg.ClientCursor(redshift), redshift.cursor()):  # simple protocol, then extended
        with pytest.raises(psycopg.errors.SyntaxError) as refused:
            cursor.execute(f"SELECT '{name}', '{name}', %s", (1,))
        assert refused.value.diag.message_primary.startswith("Statement is too large. Statement Size: 167772")
        assert refused.value.diag.message_primary.endswith("Maximum Allowed: 16777216 bytes")
    redshift.execute(f"INSERT INTO {table} VALUES (1, %s)", ("a",))  # the connection goes on
    assert len(redshift.execute(f"SELECT '{name}'").fetchone()[0]) == 8 << 20
    assert rows(redshift, f"SELECT id FROM {table}") == [(1,)]


def test_returning_is_refused(redshift: psycopg.Connection, table: str) -> None:
    create_people(redshift, table)
    with pytest.raises(psycopg.errors.SyntaxError) as refused:
        redshift.execute(f"INSERT INTO {table} VALUES (1, 'a') RETURNING id")
    assert refused.value.diag.message_primary == 'syntax error at or near "RETURNING"'


def test_select_distinct_on_is_refused(redshift: psycopg.Connection, table: str) -> None:
    create_people(redshift, table)
    with pytest.raises(psycopg.errors.FeatureNotSupported) as refused:
        redshift.execute(f"SELECT DISTINCT ON (id) id, name FROM {table}")
    assert refused.value.diag.message_primary == "SELECT DISTINCT ON is not supported"


def test_merge_with_a_subquery_source_is_refused(redshift: psycopg.Connection, table: str) -> None:
    create_people(redshift, table)
    with pytest.raises(psycopg.errors.FeatureNotSupported) as refused:
        redshift.execute(f"MERGE INTO {table} USING (SELECT 1 AS id) AS s ON {table}.id = s.id "
                         "WHEN MATCHED THEN DELETE WHEN NOT MATCHED THEN INSERT VALUES (s.id, 'new')")
    assert "can't be a view or a subquery" in refused.value.diag.message_primary
    assert rows(redshift, f"SELECT id FROM {table}") == []


def test_merge_with_a_table_source_is_accepted(redshift: psycopg.Connection, table: str) -> None:
    create_people(redshift, table)
    staging = f"{table}_stage"
    try:
        create_people(redshift, staging)
        redshift.execute(f"INSERT INTO {table} VALUES (1, 'old'), (2, 'keep')")
        redshift.execute(f"INSERT INTO {staging} VALUES (1, 'new'), (3, 'added')")
        redshift.execute(f"MERGE INTO {table} USING {staging} AS s ON {table}.id = s.id "
                         "WHEN MATCHED THEN UPDATE SET name = s.name "
                         "WHEN NOT MATCHED THEN INSERT VALUES (s.id, s.name)")
        assert rows(redshift, f"SELECT id, name FROM {table} ORDER BY id") == [(1, "new"), (2, "keep"), (3, "added")]
    finally:
        redshift.execute(f"DROP TABLE IF EXISTS {staging}")


def test_lock_with_a_mode_is_refused(redshift: psycopg.Connection, table: str) -> None:
    create_people(redshift, table)
    redshift.execute("BEGIN")
    with pytest.raises(psycopg.errors.SyntaxError) as refused:
        redshift.execute(f"LOCK TABLE {table} IN SHARE MODE")
    assert refused.value.diag.message_primary == 'syntax error at or near "IN"'


def test_lock_without_a_mode_is_accepted_in_a_transaction(redshift: psycopg.Connection, table: str) -> None:
    create_people(redshift, table)
    redshift.execute("BEGIN")
    redshift.execute(f"LOCK {table}")
    assert rows(redshift, f"SELECT mode FROM pg_locks WHERE pid = pg_backend_pid() "
                          f"AND relation = '{table}'::regclass AND mode = 'AccessExclusiveLock'") == \
        [("AccessExclusiveLock",)]


# ----------------------------------------------------------------- types and constraints


def test_a_jsonb_column_is_refused(redshift: psycopg.Connection, table: str) -> None:
    with pytest.raises(psycopg.errors.FeatureNotSupported) as refused:
        redshift.execute(f"CREATE TABLE {table} (payload jsonb)")
    assert refused.value.diag.message_primary == 'Column has unsupported type "jsonb"'
    assert rows(redshift, f"SELECT to_regclass('{table}')") == [(None,)]


def test_a_super_column_is_accepted(redshift: psycopg.Connection, table: str) -> None:
    redshift.execute(f"CREATE TABLE {table} (payload super)")
    assert rows(redshift, f"SELECT column_name FROM information_schema.columns WHERE table_name = '{table}'") == \
        [("payload",)]


def test_a_primary_key_is_not_enforced(redshift: psycopg.Connection, table: str) -> None:
    redshift.execute(f"CREATE TABLE {table} (id bigint PRIMARY KEY, name varchar(5) NOT NULL)")
    redshift.execute(f"INSERT INTO {table} VALUES (1, 'a')")
    redshift.execute(f"INSERT INTO {table} VALUES (1, 'b')")
    assert rows(redshift, f"SELECT id, name FROM {table} ORDER BY name") == [(1, "a"), (1, "b")]


def test_not_null_is_enforced(redshift: psycopg.Connection, table: str) -> None:
    redshift.execute(f"CREATE TABLE {table} (id bigint PRIMARY KEY, name varchar(5) NOT NULL)")
    with pytest.raises(psycopg.errors.NotNullViolation):
        redshift.execute(f"INSERT INTO {table} VALUES (1, NULL)")
    assert rows(redshift, f"SELECT id FROM {table}") == []


def test_text_becomes_varchar_256(redshift: psycopg.Connection, table: str) -> None:
    redshift.execute(f"CREATE TABLE {table} (note text)")
    assert rows(redshift, f"SELECT data_type, character_maximum_length FROM information_schema.columns "
                          f"WHERE table_name = '{table}'") == [("character varying", 256)]


def test_a_varchar_length_counts_bytes_so_three_two_byte_characters_do_not_fit_varchar_4(
        redshift: psycopg.Connection, table: str) -> None:
    redshift.execute(f"CREATE TABLE {table} (word varchar(4))")
    six_bytes = "ééé"
    assert (len(six_bytes), len(six_bytes.encode())) == (3, 6)
    with pytest.raises(psycopg.errors.StringDataRightTruncation):
        redshift.execute(f"INSERT INTO {table} VALUES ('{six_bytes}')")
    redshift.execute(f"INSERT INTO {table} VALUES ('éé')")  # 2 characters, 4 bytes: fits
    assert rows(redshift, f"SELECT word FROM {table}") == [("éé",)]


def test_distkey_and_sortkey_are_accepted(redshift: psycopg.Connection, table: str) -> None:
    redshift.execute(f"CREATE TABLE {table} (x bigint, y varchar(5)) DISTKEY(x) SORTKEY(x)")
    redshift.execute(f"INSERT INTO {table} VALUES (1, 'a')")
    assert rows(redshift, f"SELECT x, y FROM {table}") == [(1, "a")]


def test_a_distkey_naming_a_missing_column_is_refused(redshift: psycopg.Connection, table: str) -> None:
    with pytest.raises(psycopg.errors.UndefinedColumn) as refused:
        redshift.execute(f"CREATE TABLE {table} (x bigint) DISTKEY(nope)")
    assert '"nope"' in refused.value.diag.message_primary
    assert rows(redshift, f"SELECT to_regclass('{table}')") == [(None,)]


# ----------------------------------------------------------------- TRUNCATE commits


def test_truncate_in_a_transaction_cannot_be_rolled_back(redshift: psycopg.Connection, table: str) -> None:
    create_people(redshift, table)
    redshift.execute(f"INSERT INTO {table} VALUES (1, 'a')")
    redshift.execute("BEGIN")
    redshift.execute(f"TRUNCATE {table}")
    redshift.execute("ROLLBACK")
    assert rows(redshift, f"SELECT count(*) FROM {table}") == [(0,)]


def test_truncate_commits_the_work_done_before_it_in_its_transaction(
        redshift: psycopg.Connection, table: str) -> None:
    create_people(redshift, table)
    other = f"{table}_other"
    try:
        create_people(redshift, other)
        redshift.execute(f"INSERT INTO {table} VALUES (1, 'a')")
        redshift.execute("BEGIN")
        redshift.execute(f"INSERT INTO {other} VALUES (2, 'b')")
        redshift.execute(f"TRUNCATE {table}")
        redshift.execute("ROLLBACK")
        assert (rows(redshift, f"SELECT id FROM {other}"), rows(redshift, f"SELECT id FROM {table}")) == \
            ([(2,)], [])
    finally:
        redshift.execute(f"DROP TABLE IF EXISTS {other}")


# ----------------------------------------------------------------- COPY FROM S3


def test_copy_from_a_prefix_loads_every_object_under_it(
        redshift: psycopg.Connection, table: str, objects: Objects) -> None:
    create_people(redshift, table)
    objects.put("data.csv", b"1,a\n2,b\n")
    objects.put("data.csv.bak", b"3,c\n")
    copy_from(redshift, table, objects.url("data.csv"))
    assert rows(redshift, f"SELECT id FROM {table} ORDER BY id") == [(1,), (2,), (3,)]


def test_copy_with_a_manifest_loads_only_its_entries(
        redshift: psycopg.Connection, table: str, objects: Objects) -> None:
    create_people(redshift, table)
    data = objects.put("data.csv", b"1,a\n2,b\n")
    objects.put("data.csv.bak", b"3,c\n")
    manifest = objects.put("load.manifest", json.dumps({"entries": [{"url": data, "mandatory": True}]}).encode())
    copy_from(redshift, table, manifest, "CSV MANIFEST")
    assert rows(redshift, f"SELECT id FROM {table} ORDER BY id") == [(1,), (2,)]


def test_a_missing_mandatory_manifest_entry_fails_the_load(
        redshift: psycopg.Connection, table: str, objects: Objects) -> None:
    create_people(redshift, table)
    data = objects.put("data.csv", b"1,a\n")
    missing = objects.url("missing.csv")
    manifest = objects.put("load.manifest", json.dumps(
        {"entries": [{"url": data, "mandatory": True}, {"url": missing, "mandatory": True}]}).encode())
    with pytest.raises(psycopg.Error) as failed:
        copy_from(redshift, table, manifest, "CSV MANIFEST")
    assert missing in failed.value.diag.message_primary
    assert rows(redshift, f"SELECT id FROM {table}") == []


def test_gzip_objects_load(redshift: psycopg.Connection, table: str, objects: Objects) -> None:
    create_people(redshift, table)
    objects.put("data.csv.gz", gzip.compress(b"1,a\n2,b\n"))
    copy_from(redshift, table, objects.url(), "CSV GZIP")
    assert rows(redshift, f"SELECT id, name FROM {table} ORDER BY id") == [(1, "a"), (2, "b")]


def test_zstd_objects_load_frame_after_frame(redshift: psycopg.Connection, table: str, objects: Objects) -> None:
    import pyarrow as pa

    create_people(redshift, table)
    zstd = pa.Codec("zstd")
    objects.put("data.csv.zst", zstd.compress(b"1,a\n", asbytes=True) + zstd.compress(b"2,b\n", asbytes=True))
    copy_from(redshift, table, objects.url(), "CSV ZSTD")
    assert rows(redshift, f"SELECT id, name FROM {table} ORDER BY id") == [(1, "a"), (2, "b")]


def test_a_truncated_zstd_object_fails_the_copy(redshift: psycopg.Connection, table: str, objects: Objects) -> None:
    import pyarrow as pa

    create_people(redshift, table)
    objects.put("data.csv.zst", pa.Codec("zstd").compress(b"1,a\n2,b\n" * 100, asbytes=True)[:-8])
    with pytest.raises(psycopg.Error, match="zstd"):
        copy_from(redshift, table, objects.url(), "CSV ZSTD")
    assert rows(redshift, f"SELECT id FROM {table}") == []


@pytest.mark.parametrize(("options", "names"), [("CSV ACCEPTINVCHARS", ["a?b", "c??"]),
                                                ("CSV ACCEPTINVCHARS AS '^'", ["a^b", "c^^"])],
                         ids=["question-mark", "caret"])
def test_acceptinvchars_replaces_each_byte_that_is_not_utf8(redshift: psycopg.Connection, table: str,
                                                            objects: Objects, options: str, names: list[str]) -> None:
    create_people(redshift, table)
    objects.put("data.csv", b"1,a\xffb\n2,c\xfe\xfd\n")
    copy_from(redshift, table, objects.url(), options)
    assert [r[0] for r in rows(redshift, f"SELECT name FROM {table} ORDER BY id")] == names


def test_without_acceptinvchars_a_byte_that_is_not_utf8_fails_the_load(redshift: psycopg.Connection, table: str,
                                                                       objects: Objects) -> None:
    create_people(redshift, table)
    objects.put("data.csv", b"1,a\xffb\n")
    with pytest.raises(psycopg.errors.InternalError, match="Load into table"):
        copy_from(redshift, table, objects.url())


def test_ignoreheader_skips_the_header_line(redshift: psycopg.Connection, table: str, objects: Objects) -> None:
    create_people(redshift, table)
    objects.put("data.csv", b"id,name\n1,a\n2,b\n")
    copy_from(redshift, table, objects.url(), "CSV IGNOREHEADER 1")
    assert rows(redshift, f"SELECT id, name FROM {table} ORDER BY id") == [(1, "a"), (2, "b")]


def test_null_as_backslash_n_loads_null(redshift: psycopg.Connection, table: str, objects: Objects) -> None:
    create_people(redshift, table)
    objects.put("data.csv", b"1,\\N\n2,N\n")
    copy_from(redshift, table, objects.url(), r"CSV NULL AS '\\N'")
    assert rows(redshift, f"SELECT id, name FROM {table} ORDER BY id") == [(1, None), (2, "N")]


def test_null_as_a_string_of_ones_own_loads_that_string_as_null(
        redshift: psycopg.Connection, table: str, objects: Objects) -> None:
    create_people(redshift, table)
    objects.put("data.csv", b"1,nil\n2,\\N\n")
    copy_from(redshift, table, objects.url(), "CSV NULL AS 'nil'")
    assert rows(redshift, f"SELECT id, name FROM {table} ORDER BY id") == [(1, None), (2, "\\N")]


def test_copy_without_iam_role_or_credentials_is_refused(
        redshift: psycopg.Connection, table: str, objects: Objects) -> None:
    create_people(redshift, table)
    objects.put("data.csv", b"1,a\n")
    with pytest.raises(psycopg.Error) as refused:
        redshift.execute(f"COPY {table} FROM '{objects.url()}' CSV")
    assert "IAM_ROLE or CREDENTIALS" in refused.value.diag.message_primary
    assert rows(redshift, f"SELECT id FROM {table}") == []


def test_a_copy_parameter_the_stand_in_does_not_emulate_is_refused_saying_so(
        redshift: psycopg.Connection, table: str, objects: Objects) -> None:
    create_people(redshift, table)
    objects.put("data.csv", b"1,abcdefgh\n")
    with pytest.raises(psycopg.errors.FeatureNotSupported) as refused:
        copy_from(redshift, table, objects.url(), "CSV TRUNCATECOLUMNS")
    assert refused.value.diag.message_primary == "COPY parameter TRUNCATECOLUMNS is not emulated by the stand-in"
    assert rows(redshift, f"SELECT id FROM {table}") == []


def test_a_prefix_that_matches_nothing_is_refused(redshift: psycopg.Connection, table: str, objects: Objects) -> None:
    create_people(redshift, table)
    with pytest.raises(psycopg.Error) as refused:
        copy_from(redshift, table, objects.url("nothing/"))
    assert refused.value.diag.message_primary == f"The specified S3 prefix '{objects.prefix}/nothing/' does not exist"


def test_pg_last_copy_count_gives_the_rows_of_the_last_good_copy(
        stack: StackEndpoints, table: str, objects: Objects) -> None:
    objects.put("data.csv", b"1,a\n2,b\n3,c\n")
    with psycopg.connect(stack.redshift_url, autocommit=True) as session:
        create_people(session, table)
        before = rows(session, "SELECT pg_last_copy_id()")
        copy_from(session, table, objects.url())
        (count, copy_id), = rows(session, "SELECT pg_last_copy_count(), pg_last_copy_id()")
    assert before == [(-1,)]
    assert count == 3 and copy_id != -1


def test_a_copy_in_a_transaction_that_is_rolled_back_loads_nothing(
        redshift: psycopg.Connection, table: str, objects: Objects) -> None:
    create_people(redshift, table)
    objects.put("data.csv", b"1,a\n2,b\n")
    redshift.execute("BEGIN")
    copy_from(redshift, table, objects.url())
    inside = rows(redshift, f"SELECT count(*) FROM {table}")
    redshift.execute("ROLLBACK")
    assert (inside, rows(redshift, f"SELECT count(*) FROM {table}")) == ([(2,)], [(0,)])


# ----------------------------------------------------------------- a refused load


def failed_load(redshift: psycopg.Connection, table: str, objects: Objects, bad_file: bytes) -> psycopg.Error:
    """COPY a good object and then ``bad_file`` (with a header line) under one prefix; the load's error."""
    objects.put("a_good.csv", b"id,name\n10,fine\n")
    objects.put("b_bad.csv", bad_file)
    with pytest.raises(psycopg.Error) as failed:
        copy_from(redshift, table, objects.url(), "CSV IGNOREHEADER 1")
    return failed.value


def load_error(redshift: psycopg.Connection) -> dict[str, Any]:
    """The only sys_load_error_detail row of the session's last COPY."""
    cursor = redshift.execute("SELECT file_name, line_number, column_name, error_code FROM sys_load_error_detail "
                              "WHERE query_id = pg_last_copy_id()")
    (row,) = cursor.fetchall()
    names = [column.name for column in cursor.description or ()]
    return {name: value.strip() if isinstance(value, str) else value for name, value in zip(names, row, strict=True)}


def test_a_bad_row_fails_the_whole_load_and_nothing_is_loaded(
        redshift: psycopg.Connection, table: str, objects: Objects) -> None:
    create_people(redshift, table)
    error = failed_load(redshift, table, objects, b"id,name\n1,ok\n2,toolongvalue\n")
    assert error.sqlstate == "XX000"
    assert error.diag.message_primary == \
        f"Load into table '{table}' failed.  Check 'sys_load_error_detail' system table for details."
    assert rows(redshift, f"SELECT id FROM {table}") == []


def test_a_too_long_value_is_error_1204_at_its_file_line_and_column(
        redshift: psycopg.Connection, table: str, objects: Objects) -> None:
    create_people(redshift, table)
    failed_load(redshift, table, objects, b"id,name\n1,ok\n2,toolongvalue\n")
    assert load_error(redshift) == {"file_name": objects.url("b_bad.csv"), "line_number": 3, "column_name": "name",
                                    "error_code": 1204}


def test_a_non_numeric_value_in_a_bigint_column_is_error_1207(
        redshift: psycopg.Connection, table: str, objects: Objects) -> None:
    create_people(redshift, table)
    failed_load(redshift, table, objects, b"id,name\n1,ok\nx,b\n")
    assert load_error(redshift) == {"file_name": objects.url("b_bad.csv"), "line_number": 3, "column_name": "id",
                                    "error_code": 1207}


def test_stl_load_errors_carries_the_raw_line_and_field_value(
        redshift: psycopg.Connection, table: str, objects: Objects) -> None:
    create_people(redshift, table)
    failed_load(redshift, table, objects, b"id,name\n1,ok\n2,toolongvalue\n")
    (raw_line, raw_field_value, err_code), = rows(
        redshift, "SELECT raw_line, raw_field_value, err_code FROM stl_load_errors WHERE query = pg_last_copy_id()")
    assert (raw_line.strip(), raw_field_value.strip(), err_code) == ("2,toolongvalue", "toolongvalue", 1204)
