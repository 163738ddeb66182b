"""The ledger of loaded S3 objects and the Kinesis shard checkpoints.

Both live in the target database and are written in the same transaction as the rows they
account for: that is what makes a load exactly-once across re-runs, crashes and retries.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

import psycopg
from psycopg import sql

from pipeline.warehouse.dialects.base import (
    CHECKPOINT_TABLE,
    LEDGER_TABLE,
    PART_TABLE,
    PENDING_TABLE,
    WATCH_TABLE,
    Dialect,
)

STATE_TABLES = (LEDGER_TABLE, CHECKPOINT_TABLE, PENDING_TABLE, WATCH_TABLE, PART_TABLE)


def ensure_state_tables(conn: psycopg.Connection, schema: str, dialect: Dialect) -> None:
    """The ledger and checkpoint tables, in a DDL transaction of their own (when one is missing)."""
    with conn.cursor() as cur:
        # One catalog query (pg_catalog: Redshift has no to_regclass) spares five CREATEs on every run.
        cur.execute("SELECT count(*) FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n "
                    "ON n.oid = c.relnamespace WHERE n.nspname = %s AND c.relname IN (%s, %s, %s, %s, %s)",
                    (schema, *STATE_TABLES))
        row = cur.fetchone()
    if not conn.autocommit:
        conn.commit()
    if row is not None and row[0] == len(STATE_TABLES):
        return
    with conn.transaction(), conn.cursor() as cur:
        cur.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(schema)))
        cur.execute(dialect.ledger_table(schema))
        cur.execute(dialect.checkpoint_table(schema))
        cur.execute(dialect.pending_table(schema))
        cur.execute(dialect.watch_table(schema))
        cur.execute(dialect.part_table(schema))


def ledger_ident(schema: str) -> sql.Identifier:
    return sql.Identifier(schema, LEDGER_TABLE)


def checkpoint_ident(schema: str) -> sql.Identifier:
    return sql.Identifier(schema, CHECKPOINT_TABLE)



def loaded_objects(conn: psycopg.Connection, schema: str, pipeline: str,
                   keys: Sequence[str] | None = None) -> dict[str, set[str]]:
    """Object key -> the ETags already loaded for it; for ``keys`` only when given (one indexed query)."""
    loaded: dict[str, set[str]] = {}
    query = sql.SQL("SELECT object_key, etag FROM {} WHERE pipeline = %s").format(ledger_ident(schema))
    params: list = [pipeline]
    if keys is not None:
        if not keys:
            return loaded
        # An IN list rather than = ANY(array): Redshift has no array parameters.
        query += sql.SQL(" AND object_key IN ({})").format(sql.SQL(", ").join(sql.Placeholder() * len(keys)))
        params.extend(keys)
    with conn.cursor() as cur:
        try:
            cur.execute(query, params)
        except psycopg.errors.UndefinedTable:
            return loaded  # nothing was ever loaded into this warehouse
        for key, etag in cur:
            loaded.setdefault(key, set()).add(etag)
    return loaded


def claim_object(cur: psycopg.Cursor, dialect: Dialect, schema: str, pipeline: str, key: str, etag: str) -> bool:
    """Insert the ledger row first, inside the load's transaction (the dialect's way).

    A concurrent run loading the same object waits on this row (or on the dialect's lock) and then
    finds it taken, so two runs never both load one object version.
    """
    return dialect.claim_object(cur, schema, pipeline, key, etag)


def record_object(cur: psycopg.Cursor, dialect: Dialect, schema: str, pipeline: str, key: str, etag: str, *,
                  rows: int, rejected: int, nbytes: int) -> bool:
    """The whole ledger row of an object whose rows are already in (an idempotent load), in one statement."""
    return dialect.record_object(cur, schema, pipeline, key, etag, rows=rows, rejected=rejected, nbytes=nbytes)


def complete_object(cur: psycopg.Cursor, schema: str, pipeline: str, key: str, etag: str, *,
                    rows: int, rejected: int, nbytes: int) -> None:
    cur.execute(
        sql.SQL("UPDATE {} SET rows = %s, rejected = %s, bytes = %s, loaded_at = now() "
                "WHERE pipeline = %s AND object_key = %s AND etag = %s").format(ledger_ident(schema)),
        (rows, rejected, nbytes, pipeline, key, etag),
    )


# --------------------------------------------------------------------------- parts of a scattered load


@dataclass(frozen=True)
class Part:
    """Byte ranges of an object's body (after decompression and the header) that one writer committed."""

    ranges: tuple[tuple[int, int], ...]
    rows: int
    nbytes: int

    def encode(self) -> str:
        return ",".join(f"{start}-{end}" for start, end in self.ranges)

    @staticmethod
    def decode(text: str) -> tuple[tuple[int, int], ...]:
        return tuple((int(a), int(b)) for a, b in (item.split("-") for item in text.split(",") if item))


PART_TABLE = PART_TABLE  # for messages: where a scattered load's committed parts are


def _parts(schema: str) -> sql.Identifier:
    return sql.Identifier(schema, PART_TABLE)


def read_parts(conn: psycopg.Connection, schema: str, pipeline: str, key: str, etag: str) -> list[Part]:
    """The parts of this object version that writers of an interrupted scattered load committed."""
    with conn.cursor() as cur:
        cur.execute(sql.SQL("SELECT ranges, rows, bytes FROM {} WHERE pipeline = %s AND object_key = %s "
                            "AND etag = %s").format(_parts(schema)), (pipeline, key, etag))
        return [Part(Part.decode(ranges), rows, nbytes) for ranges, rows, nbytes in cur.fetchall()]


def has_parts(cur: psycopg.Cursor, schema: str, pipeline: str, key: str, etag: str) -> bool:
    cur.execute(sql.SQL("SELECT 1 FROM {} WHERE pipeline = %s AND object_key = %s AND etag = %s LIMIT 1").format(
        _parts(schema)), (pipeline, key, etag))
    return cur.fetchone() is not None


def write_part(cur: psycopg.Cursor, schema: str, pipeline: str, key: str, etag: str, part_id: str,
               part: Part) -> None:
    """One writer's part, in that writer's transaction (the one holding its rows)."""
    cur.execute(sql.SQL("INSERT INTO {} (pipeline, object_key, etag, part, ranges, rows, bytes) "
                        "VALUES (%s, %s, %s, %s, %s, %s, %s)").format(_parts(schema)),
                (pipeline, key, etag, part_id, part.encode(), part.rows, part.nbytes))


def forget_parts(cur: psycopg.Cursor, schema: str, pipeline: str, key: str, etag: str) -> None:
    """An object's parts, once its ledger row has committed (they say nothing the ledger does not)."""
    cur.execute(sql.SQL("DELETE FROM {} WHERE pipeline = %s AND object_key = %s AND etag = %s").format(
        _parts(schema)), (pipeline, key, etag))


def forget_pipeline(cur: psycopg.Cursor, schema: str, pipeline: str) -> None:
    """Drop every ledger row of a pipeline (modes that rebuild the whole table)."""
    cur.execute(sql.SQL("DELETE FROM {} WHERE pipeline = %s").format(ledger_ident(schema)), (pipeline,))


def _pending(schema: str) -> sql.Identifier:
    return sql.Identifier(schema, PENDING_TABLE)


def write_pending(cur: psycopg.Cursor, schema: str, pipeline: str, run_id: str, objects: Sequence) -> None:
    """A replace run's ledger rows, kept aside until its table swap is settled."""
    for result in objects:
        cur.execute(sql.SQL("INSERT INTO {} (pipeline, run_id, object_key, etag, rows, rejected, bytes) "
                            "VALUES (%s, %s, %s, %s, %s, %s, %s)").format(_pending(schema)),
                    (pipeline, run_id, result.key, result.etag, result.rows, result.rejected, result.bytes))


def pending_runs(conn: psycopg.Connection, schema: str, pipeline: str) -> list[str]:
    with conn.cursor() as cur:
        cur.execute(sql.SQL("SELECT DISTINCT run_id FROM {} WHERE pipeline = %s").format(_pending(schema)),
                    (pipeline,))
        return [row[0] for row in cur.fetchall()]


def settle_pending(cur: psycopg.Cursor, schema: str, pipeline: str, run_id: str, *, swapped: bool) -> None:
    """After a replace run: its rows become the pipeline's ledger if its table was swapped in; else they go."""
    if swapped:
        forget_pipeline(cur, schema, pipeline)
        cur.execute(sql.SQL("INSERT INTO {} (pipeline, object_key, etag, rows, rejected, bytes) SELECT pipeline, "
                            "object_key, etag, rows, rejected, bytes FROM {} WHERE pipeline = %s AND run_id = %s")
                    .format(ledger_ident(schema), _pending(schema)), (pipeline, run_id))
    cur.execute(sql.SQL("DELETE FROM {} WHERE pipeline = %s AND run_id = %s").format(_pending(schema)),
                (pipeline, run_id))


def ledger_rows(conn: psycopg.Connection, schema: str, pipeline: str, key: str | None = None) -> list[dict]:
    query = sql.SQL("SELECT object_key, etag, rows, rejected, bytes, loaded_at FROM {} WHERE pipeline = %s").format(
        ledger_ident(schema))
    params: list = [pipeline]
    if key is not None:
        query += sql.SQL(" AND object_key = %s")
        params.append(key)
    with conn.cursor(row_factory=psycopg.rows.dict_row) as cur:
        cur.execute(query + sql.SQL(" ORDER BY object_key, loaded_at"), params)
        return list(cur)


def newest_load(conn: psycopg.Connection, schema: str, pipeline: str) -> tuple[str, datetime] | None:
    """The object whose load committed last, and when; None when nothing is in the ledger (or no ledger)."""
    return _newest(conn, schema, LEDGER_TABLE, sql.SQL(
        "SELECT object_key, loaded_at FROM {} WHERE pipeline = %s ORDER BY loaded_at DESC LIMIT 1").format(
        ledger_ident(schema)), (pipeline,))


def _newest(conn: psycopg.Connection, schema: str, table: str, query: sql.Composed, params: tuple
            ) -> tuple[str, datetime] | None:
    with conn.cursor() as cur:
        cur.execute("SELECT 1 FROM information_schema.tables WHERE table_schema = %s AND table_name = %s",
                    (schema, table))
        if cur.fetchone() is None:
            return None
        cur.execute(query, params)
        row = cur.fetchone()
    return (str(row[0]), row[1]) if row else None


# --------------------------------------------------------------------------- shard checkpoints



def read_checkpoints(conn: psycopg.Connection, schema: str, pipeline: str, stream: str) -> dict[str, str]:
    """Shard id -> checkpoint (the position of the last record committed)."""
    with conn.cursor() as cur:
        cur.execute(sql.SQL("SELECT shard_id, sequence_number FROM {} WHERE pipeline = %s AND stream = %s").format(
            checkpoint_ident(schema)), (pipeline, stream))
        return dict(cur.fetchall())


def newest_checkpoint(conn: psycopg.Connection, schema: str, pipeline: str, stream: str
                      ) -> tuple[str, datetime] | None:
    """The shard whose checkpoint moved last (records committed), and when; None before the first batch."""
    return _newest(conn, schema, CHECKPOINT_TABLE, sql.SQL(
        "SELECT shard_id, updated_at FROM {} WHERE pipeline = %s AND stream = %s "
        "ORDER BY updated_at DESC LIMIT 1").format(checkpoint_ident(schema)), (pipeline, stream))


def write_checkpoints(cur: psycopg.Cursor, dialect: Dialect, schema: str, pipeline: str, stream: str,
                      positions: Mapping[str, str], counts: Mapping[str, int] | None = None,
                      *, expected: Mapping[str, str | None] | None = None) -> None:
    """Move shard checkpoints forward, in the caller's transaction (the same one as the batch).

    ``expected`` is where each shard's checkpoint stood when the batch was read; if another run
    moved it meanwhile, the update finds no row and the whole transaction is refused, so a batch
    is never committed twice. Where keys are not enforced the dialect locks the table first.
    """
    counts = counts or {}
    table = checkpoint_ident(schema)
    dialect.lock_for_claim(cur, table)
    for shard, position in positions.items():
        before = (expected or {}).get(shard)
        if before is None:
            if not dialect.insert_checkpoint(cur, table, (pipeline, stream, shard, position, counts.get(shard, 0))):
                raise CheckpointMoved(shard)
            continue
        cur.execute(
            sql.SQL("UPDATE {} SET sequence_number = %s, records = records + %s, updated_at = now() "
                    "WHERE pipeline = %s AND stream = %s AND shard_id = %s AND sequence_number = %s").format(
                checkpoint_ident(schema)),
            (position, counts.get(shard, 0), pipeline, stream, shard, before),
        )
        if cur.rowcount != 1:
            raise CheckpointMoved(shard)


class CheckpointMoved(Exception):
    """Another run committed past this shard's checkpoint while this batch was being read."""

    def __init__(self, shard: str):
        super().__init__(f"shard {shard}: the checkpoint moved while this batch was read (another run?)")
        self.shard = shard



# --------------------------------------------------------------------------- what the checkpoints are of


@dataclass(frozen=True)
class Watch:
    """Of one shard's checkpoint: the stream incarnation (its creation time, and how many came before it
    for this pipeline) and the time before which every record of the shard is known to be read."""

    stream_created: datetime | None
    verified_through: datetime | None
    generation: int = 0


WATCH_COLUMNS = ("pipeline", "stream", "shard_id", "stream_created", "verified_through", "generation")


def watch_ident(schema: str) -> sql.Identifier:
    return sql.Identifier(schema, WATCH_TABLE)


def read_watch(conn: psycopg.Connection, schema: str, pipeline: str, stream: str) -> dict[str, Watch]:
    with conn.cursor() as cur:
        cur.execute(sql.SQL("SELECT shard_id, stream_created, verified_through, generation FROM {} "
                            "WHERE pipeline = %s AND stream = %s").format(watch_ident(schema)), (pipeline, stream))
        return {shard: Watch(created, verified, generation) for shard, created, verified, generation in cur.fetchall()}


def write_watch(cur: psycopg.Cursor, dialect: Dialect, schema: str, pipeline: str, stream: str,
                rows: Mapping[str, Watch]) -> None:
    """Replace the watch rows of these shards, in the caller's transaction."""
    if not rows:
        return
    cur.executemany(sql.SQL("DELETE FROM {} WHERE pipeline = %s AND stream = %s AND shard_id = %s").format(
        watch_ident(schema)), [(pipeline, stream, shard) for shard in rows])
    dialect.write_rows(cur, watch_ident(schema), WATCH_COLUMNS,
                       [(pipeline, stream, shard, w.stream_created, w.verified_through, w.generation)
                        for shard, w in rows.items()])


def forget_stream(cur: psycopg.Cursor, schema: str, pipeline: str, stream: str) -> None:
    """The pipeline's checkpoints and watch rows of ``stream``: the next read starts at its starting position."""
    for table in (checkpoint_ident(schema), watch_ident(schema)):
        cur.execute(sql.SQL("DELETE FROM {} WHERE pipeline = %s AND stream = %s").format(table), (pipeline, stream))
