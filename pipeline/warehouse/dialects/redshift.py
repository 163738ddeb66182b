"""Amazon Redshift (Serverless): COPY from S3 only, keys not enforced, TRUNCATE commits.

Rules this module relies on (sources in docs/targets.md):

- there is no ``COPY ... FROM STDIN``: rows arrive by ``COPY table FROM 's3://...' IAM_ROLE ...``, and a
  FROM path is a key prefix, so one object is loaded exactly through a one-entry MANIFEST;
- a refused COPY fails the load ("Load into table 'x' failed"); its rows are in ``sys_load_error_detail``
  under ``pg_last_copy_id()``;
- no ``INSERT ... ON CONFLICT``; primary and unique keys are declared but not enforced, so a claim takes
  a table ``LOCK`` (held to the end of the transaction) before it looks and inserts;
- ``TRUNCATE`` commits the transaction it runs in, so DML code empties with DELETE;
- TEXT is VARCHAR(256): strings are VARCHAR(65535); JSON is SUPER;
- concurrent writers may fail with error 1023 (serializable isolation violation) and must retry.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

import psycopg
from psycopg import sql

from pipeline.schema import Column
from pipeline.warehouse.dialects.base import Capabilities, CopyFormat, Dialect, Strategy
from pipeline.warehouse.fit import Refusals

_STRATEGIES = {
    "insert_direct": "one transaction per object: LOCK on the ledger, claim, COPY FROM S3 (one-entry manifest), "
                     "ledger completion",
    "append": "one transaction per object: LOCK on the ledger, claim, COPY FROM S3 (one-entry manifest), "
              "ledger completion",
    "merge": "one transaction per object: COPY FROM S3 into a temporary stage, DELETE ... USING and INSERT of the "
             "last row of each key, LOCK on the ledger and claim",
    "insert": "objects load into a stage table; one transaction publishes the rows and the ledger",
    "truncate_insert": "objects load into a stage table; one transaction DELETEs the old rows (TRUNCATE would "
                       "commit), publishes the new ones and rewrites the ledger",
    "replace": "objects load into a new table; one transaction drops the old one, renames the new one and "
               "rewrites the ledger",
}


def literal(text: str) -> sql.SQL:
    """A string literal as Redshift's COPY reads it: quotes doubled, and backslashes too (it reads \\ddd escapes)."""
    return sql.SQL("'" + text.replace("\\", "\\\\").replace("'", "''") + "'")


class Redshift(Dialect):
    name = "redshift"
    label = "Redshift"
    capabilities = Capabilities(copy_from_stdin=False, enforces_keys=False, ddl_with_dml=True, temp_tables=True,
                                on_conflict=False)
    # No unbounded text (TEXT is VARCHAR(256)): VARCHAR(65535) is the widest; SUPER holds JSON.
    types: ClassVar[dict[str, str]] = {
        "boolean": "boolean", "long": "bigint", "double": "double precision", "string": "varchar(65535)",
             "timestamp": "timestamptz", "json": "super"}

    @classmethod
    def detect(cls, conn: psycopg.Connection) -> str | None:
        row = conn.execute("SELECT version()").fetchone()
        version = str(row[0]) if row else ""
        return version if "Redshift" in version else None

    def connect_options(self) -> dict[str, Any]:
        # Redshift speaks an old protocol: no server-side prepared statements, UTF8 only.
        return {"prepare_threshold": None, "client_encoding": "UTF8"}

    def describe(self) -> str:
        release = self.version.rsplit("Redshift ", 1)[-1].split(" ")[0] if "Redshift " in self.version else ""
        return f"Redshift {release}".strip()

    def strategy(self, mode: str, *, stream: bool = False) -> Strategy:
        if stream:
            return Strategy(mode, "staged batch",
                            "each batch is staged to S3 as gzip CSV and loaded with COPY FROM S3 in the transaction "
                            "that moves the shard checkpoints (after a LOCK on the checkpoint table)"
                            + ("; merge deletes and inserts the batch's keys" if mode == "merge" else ""))
        return Strategy(mode, "COPY FROM S3 in a transaction", _STRATEGIES[mode])

    def single_writer(self, mode: str, *, primary_key: bool) -> str | None:
        return ("Redshift loads with COPY FROM S3, which splits an object's load across the warehouse's slices "
                "itself")

    # ----------------------------------------------------------------- DDL

    def create_table(self, schema: str, table: str, columns: Sequence[Column], *, primary_key: Sequence[str] = (),
                     column_options: Mapping[str, str] | None = None, table_properties: Mapping[str, Any] | None = None,
                     distkey: str | None = None, sortkey: Sequence[str] = (),
                     if_not_exists: bool = True) -> list[sql.Composed]:
        create = self._create(schema, table, columns, primary_key, column_options, if_not_exists)
        if distkey:
            create += sql.SQL(" DISTKEY({})").format(sql.Identifier(distkey))
        if sortkey:
            create += sql.SQL(" SORTKEY({})").format(sql.SQL(", ").join(map(sql.Identifier, sortkey)))
        return [create]

    def truncate(self, table: sql.Identifier) -> sql.Composed:
        return sql.SQL("DELETE FROM {}").format(table)  # TRUNCATE commits the transaction it runs in

    # ----------------------------------------------------------------- state

    def lock_for_claim(self, cur: psycopg.Cursor, table: sql.Identifier) -> None:
        cur.execute(sql.SQL("LOCK {}").format(table))

    def claim_object(self, cur: psycopg.Cursor, schema: str, pipeline: str, key: str, etag: str) -> bool:
        from pipeline.warehouse.dialects.base import LEDGER_TABLE

        ledger = sql.Identifier(schema, LEDGER_TABLE)
        self.lock_for_claim(cur, ledger)
        cur.execute(sql.SQL("SELECT 1 FROM {} WHERE pipeline = %s AND object_key = %s AND etag = %s").format(ledger),
                    (pipeline, key, etag))
        if cur.fetchone() is not None:
            return False
        cur.execute(sql.SQL("INSERT INTO {} (pipeline, object_key, etag, rows, rejected, bytes) "
                            "VALUES (%s, %s, %s, 0, 0, 0)").format(ledger), (pipeline, key, etag))
        return True

    def record_object(self, cur: psycopg.Cursor, schema: str, pipeline: str, key: str, etag: str, *,
                      rows: int, rejected: int, nbytes: int) -> bool:
        if not self.claim_object(cur, schema, pipeline, key, etag):
            return False
        from pipeline.warehouse.state import complete_object

        complete_object(cur, schema, pipeline, key, etag, rows=rows, rejected=rejected, nbytes=nbytes)
        return True

    def retryable(self, error: BaseException) -> bool:
        return isinstance(error, psycopg.errors.SerializationFailure)  # error 1023: run the transaction again

    def insert_checkpoint(self, cur: psycopg.Cursor, table: sql.Identifier, values: tuple) -> bool:
        # The caller holds LOCK on the checkpoint table: look, then insert.
        cur.execute(sql.SQL("SELECT 1 FROM {} WHERE pipeline = %s AND stream = %s AND shard_id = %s").format(table),
                    values[:3])
        if cur.fetchone() is not None:
            return False
        cur.execute(sql.SQL("INSERT INTO {} (pipeline, stream, shard_id, sequence_number, records) "
                            "VALUES (%s, %s, %s, %s, %s)").format(table), values)
        return True

    # ----------------------------------------------------------------- rows

    # One INSERT carries at most this many bound values (Redshift's statement limit is 16 MB of text).
    max_insert_values = 32767

    def write_rows(self, cur: psycopg.Cursor, table: sql.Composable, columns: Sequence[str],
                   rows: Sequence[Sequence[str | None]]) -> None:
        # No COPY FROM STDIN: multi-row INSERTs ("Use a multi-row insert", docs/targets.md), for rejected
        # records and for stream batches small enough that staging to S3 would cost more than the rows.
        per_statement = max(1, self.max_insert_values // max(1, len(columns)))
        head = sql.SQL("INSERT INTO {} ({}) VALUES ").format(table, sql.SQL(", ").join(map(sql.Identifier, columns)))
        row = sql.SQL("({})").format(sql.SQL(", ").join(sql.Placeholder() * len(columns)))
        for start in range(0, len(rows), per_statement):
            chunk = rows[start:start + per_statement]
            cur.execute(head + sql.SQL(", ").join([row] * len(chunk)), [value for r in chunk for value in r])

    max_text_bytes = 65535  # VARCHAR(65535), counted in bytes
    # Its load error codes (r_Load_Error_Reference): 1204, 1213, 1222, and the DECIMAL overflow.
    refusals = Refusals(
        too_long="String length exceeds DDL length (code 1204: {size} {unit}, {type})",
        not_null="Missing data for not-null field (code 1213)",
        integer_range="Overflow, {value} (code 1222: outside the range of {type})",
        numeric_overflow="Numeric data overflow (the value needs more than {digits} digits before the point "
                         "of {type})",
        length_unit="bytes",
    )
    fills_merge_sequence = False  # IDENTITY values do not follow the file order: staged rows carry it

    def merge_stage(self, stage: sql.Identifier, target: sql.Identifier, columns: Sequence[str],
                    sequence: str) -> list[sql.Composed]:
        # No ON COMMIT DROP and no CTAS ... WITH NO DATA: LIKE, then the sequence column; the caller drops it.
        return [sql.SQL("CREATE TEMP TABLE {} (LIKE {})").format(stage, target),
                sql.SQL("ALTER TABLE {} ADD COLUMN {} bigint").format(stage, sql.Identifier(sequence))]

    def merge_from_stage(self, target: sql.Identifier, stage: sql.Composable, columns: Sequence[str],
                         keys: Sequence[str], order: str) -> list[sql.Composed]:
        # No ON CONFLICT: delete the keys the stage holds, then insert the last stage row of each key.
        cols = sql.SQL(", ").join(map(sql.Identifier, columns))
        match = sql.SQL(" AND ").join(sql.SQL("{t}.{k} = {s}.{k}").format(t=target, s=stage, k=sql.Identifier(k))
                                      for k in keys)
        return [
            sql.SQL("DELETE FROM {} USING {} WHERE {}").format(target, stage, match),
            sql.SQL("INSERT INTO {target} ({cols}) SELECT {cols} FROM (SELECT {cols}, ROW_NUMBER() OVER "
                    "(PARTITION BY {keys} ORDER BY {order} DESC) AS pl_rank FROM {stage}) AS latest "
                    "WHERE pl_rank = 1").format(
                target=target, cols=cols, keys=sql.SQL(", ").join(map(sql.Identifier, keys)),
                order=sql.Identifier(order), stage=stage),
        ]

    def primary_key(self, conn: psycopg.Connection, schema: str, table: str) -> list[str]:
        return []  # declared keys are informational: the config names the merge keys

    def copy_from_s3(self, table: sql.Composable, columns: Sequence[str], uri: str, iam_role: str,
                     fmt: CopyFormat, *, manifest: bool = False, region: str | None = None) -> sql.Composed:
        options: list[sql.Composable] = [sql.SQL("IAM_ROLE ") + literal(iam_role)]
        if fmt.csv:
            options.append(sql.SQL("FORMAT AS CSV QUOTE AS ") + literal(fmt.quote))
        options.append(sql.SQL("DELIMITER AS ") + literal(fmt.delimiter))
        options.append(sql.SQL("NULL AS ") + literal(fmt.null_as))
        if fmt.ignore_header:
            options.append(sql.SQL(f"IGNOREHEADER {int(fmt.ignore_header)}"))
        if fmt.compression:
            options.append(sql.SQL(fmt.compression))
        if manifest:
            options.append(sql.SQL("MANIFEST"))
        if region:
            options.append(sql.SQL("REGION ") + literal(region))
        options.append(sql.SQL("TIMEFORMAT 'auto' DATEFORMAT 'auto' COMPUPDATE OFF STATUPDATE OFF"))
        return sql.SQL("COPY {} ({}) FROM {} {}").format(
            table, sql.SQL(", ").join(map(sql.Identifier, columns)), literal(uri), sql.SQL(" ").join(options))

    @staticmethod
    def manifest(uris: Sequence[str]) -> bytes:
        """A COPY manifest that loads exactly ``uris`` (a FROM path alone would load every key it prefixes)."""
        return json.dumps({"entries": [{"url": uri, "mandatory": True} for uri in uris]}).encode()

    @staticmethod
    def load_errors(conn: psycopg.Connection) -> list[dict]:
        """What the last COPY of this session refused, from sys_load_error_detail."""
        with conn.cursor(row_factory=psycopg.rows.dict_row) as cur:
            cur.execute("SELECT file_name, line_number, column_name, error_code, error_message "
                        "FROM sys_load_error_detail WHERE query_id = pg_last_copy_id() ORDER BY line_number")
            return [{key: (value.strip() if isinstance(value, str) else value) for key, value in row.items()}
                    for row in cur.fetchall()]

    @staticmethod
    def last_copy_count(cur: psycopg.Cursor) -> int:
        cur.execute("SELECT pg_last_copy_count()")
        row = cur.fetchone()
        return int(row[0]) if row else 0
