"""The Hologres stand-in: PostgreSQL behind Hologres' documented rules.

Each rule cites its page in docs/targets.md. In short:

- every statement is its own transaction; a block of several DML statements is accepted but each
  statement commits on its own, so ROLLBACK undoes nothing, unless ``hg_experimental_enable_transaction``
  is on (V2.0+), in which case the block is atomic and every table it touches is locked for the block;
- DDL and DML never share a transaction ("INSERT in ddl transaction is not supported now"); TRUNCATE
  and ``CALL set_table_property`` are DDL (before V3.1);
- ``COPY ... FROM STDIN`` is atomic and locks a table that has a primary key; fixed copy
  (``STREAM_MODE TRUE``) takes row locks, honours ``ON_CONFLICT 'none' | 'ignore' | 'update'`` on a
  primary key, and is not part of any transaction;
- no temporary tables, no LOCK, no SELECT ... FOR UPDATE, no savepoints;
- ``hg_version()``, ``set_table_property`` and ``hologres.hg_table_properties`` exist; ``version()`` reads
  like Hologres' (PostgreSQL 11.3, no Hologres in it).
"""

from __future__ import annotations

from pglast import ast, enums
from pglast.stream import RawStream

from pipeline.local.standin import wire
from pipeline.local.standin.proxy import StandinSQLError
from pipeline.local.standin.rules import COMMANDS, DDL_NODES, DML_NODES, Rules, literal, qualified, tables_of

DEFAULT_VERSION = "2.2.11"
HG_PREFIX = "hologres."  # where the hg_* settings live in PostgreSQL (a custom setting needs a prefix)


def version_tuple(text: str) -> tuple[int, ...]:
    return tuple(int(part) for part in text.split(".") if part.isdigit())


class HologresRules(Rules):
    flavor = "hologres"

    def __init__(self, session, version: str = DEFAULT_VERSION):
        super().__init__(session)
        self.version = version_tuple(session.options.settings.get(f"{session.database}.version", version))

    # ----------------------------------------------------------------- classification

    @staticmethod
    def kind(node: ast.Node) -> str:
        if isinstance(node, DML_NODES) or (isinstance(node, ast.CopyStmt) and node.is_from):
            return "dml"
        if isinstance(node, (*DDL_NODES, ast.TruncateStmt)):  # TRUNCATE is DDL before V3.1
            return "ddl"
        return "other"

    @property
    def multi_dml(self) -> bool:
        return self.setting("hg_experimental_enable_transaction", "off").lower() in ("on", "true", "1")

    def refusal(self, node: ast.Node, *, multi: bool = False) -> tuple[str, str] | None:
        if isinstance(node, ast.CreateStmt | ast.CreateTableAsStmt):
            relation = node.relation if isinstance(node, ast.CreateStmt) else node.into.rel if node.into else None
            if relation is not None and relation.relpersistence == "t":
                return "Hologres does not support temporary tables", "0A000"
        if isinstance(node, ast.LockStmt):
            return "Hologres does not support explicit locking (LOCK)", "0A000"
        if isinstance(node, ast.SelectStmt) and node.lockingClause:
            return "Hologres does not support SELECT ... FOR UPDATE / FOR SHARE", "0A000"
        if isinstance(node, ast.TransactionStmt) and node.kind in (
                enums.TransactionStmtKind.TRANS_STMT_SAVEPOINT, enums.TransactionStmtKind.TRANS_STMT_ROLLBACK_TO):
            return "Hologres does not support nested subtransactions (SAVEPOINT)", "0A000"
        if isinstance(node, ast.InsertStmt) and node.onConflictClause is not None and node.returningClause:
            return "Feature not supported: INSERT ON CONFLICT RETURNING", "0A000"
        if isinstance(node, ast.CopyStmt) and node.is_from and node.filename is not None:
            return "Hologres loads COPY FROM STDIN only, not from a server file", "0A000"
        if multi and self.in_block:
            return self._mix_refusal(node)
        return None

    def _mix_refusal(self, node: ast.Node) -> tuple[str, str] | None:
        kind = self.kind(node)
        command = COMMANDS.get(type(node), type(node).__name__.removesuffix("Stmt").upper())
        if kind == "dml" and "ddl" in self.block.kinds:
            return f"{command} in ddl transaction is not supported now", "0A000"
        if kind == "ddl" and "dml" in self.block.kinds:
            # The documentation names only DML after DDL; the strict reading refuses the other order too.
            return f"{command} in dml transaction is not supported now", "0A000"
        return None

    # ----------------------------------------------------------------- statements

    def on_statement(self, sql: str, node: ast.Node) -> None:
        if isinstance(node, ast.VariableSetStmt) and (node.name or "").startswith("hg_"):
            self._set(node)
            return
        if isinstance(node, ast.VariableShowStmt) and node.name and node.name.startswith("hg_"):
            self.session.forward_query(
                f"SELECT coalesce(current_setting({literal(HG_PREFIX + node.name)}, true), 'off') AS {node.name}")
            return
        refusal = self.refusal(node) or (self._mix_refusal(node) if self.in_block else None)
        if refusal is not None:
            self.refuse(*refusal)
            return
        if self.session.tx_status == b"E":
            self.session.forward_query(sql)  # PostgreSQL says the block is aborted
            return
        if isinstance(node, ast.CopyStmt) and node.is_from:
            self._copy(node)
            return
        if isinstance(node, ast.CreateStmt) and node.options:
            created = self._create_with_properties(node)
            if created is None:
                return
            sql = created
        kind = self.kind(node)
        if kind == "dml" and self.in_block:
            if self.multi_dml:
                if self._lock_block_tables(node):
                    self.block.kinds.add("dml")
                    self.session.forward_query(sql)
            else:
                self._dml_alone(sql)
            return
        if kind == "ddl" and self.in_block:
            self.block.kinds.add("ddl")
        self.session.forward_query(sql)

    def on_parse(self, name: str, sql: str, oids: list[int]) -> None:
        from pglast import parse_sql
        from pglast.parser import ParseError

        try:
            statements = parse_sql(sql)
        except ParseError:
            statements = ()
        node = statements[0].stmt if len(statements) == 1 else None
        if node is not None and self.in_block and self.session.tx_status == b"T":
            refusal = self.refusal(node) or self._mix_refusal(node)
            if refusal is None and self.kind(node) == "dml":
                if self.session.unsynced:
                    refusal = ("stand-in: pipelined DML inside a transaction block is not emulated", "0A000")
                elif self.multi_dml:
                    if not self._lock_block_tables(node, relay=False):
                        refusal = ("could not lock the statement's tables", "55P03")
                    self.block.kinds.add("dml")
                else:
                    self._commit_before_alone()
                    self.session.sync_hook = self._reopen_after_sync
            elif refusal is None and self.kind(node) == "ddl":
                self.block.kinds.add("ddl")
            if refusal is not None:
                from pipeline.local.standin.rules import _PLACEHOLDER, refusal_sql

                sql = refusal_sql(*refusal, parameters=max([len(oids), *map(int, _PLACEHOLDER.findall(sql))]))
            self.session.forward(wire.build_parse(name, sql, oids))
            return
        super().on_parse(name, sql, oids)

    def _set(self, node: ast.VariableSetStmt) -> None:
        name = node.name
        assert name is not None  # on_statement sends only hg_ settings here
        if name == "hg_experimental_enable_transaction" and self.version < (2, 0):
            self.refuse(f'unrecognized configuration parameter "{name}"', "42704")
            return
        value = "off"
        if node.kind == enums.VariableSetKind.VAR_SET_VALUE and node.args:
            arg = node.args[0].val
            value = str(getattr(arg, "sval", None) or getattr(arg, "ival", "")).lower()
        target = self.block.settings if node.is_local else self.settings
        if node.kind in (enums.VariableSetKind.VAR_RESET, enums.VariableSetKind.VAR_SET_DEFAULT):
            target.pop(name, None)
            value = "off"
        else:
            target[name] = value
        scope = "LOCAL " if node.is_local else ""
        self.session.forward_query(f"SET {scope}{HG_PREFIX}{name} = {literal(value)}")

    def _lock_block_tables(self, node: ast.Node, *, relay: bool = True) -> bool:
        """A multi-DML transaction takes a table lock on every table it touches, read or written."""
        for table in tables_of(node):
            if table in self.block.locked:
                continue
            try:
                self.session.exec_checked(f"LOCK TABLE {table} IN EXCLUSIVE MODE")
            except StandinSQLError as error:
                if relay:
                    self.session.relay(error.messages)
                return False
            self.block.locked.add(table)
        return True

    # ----------------------------------------------------------------- DML without multi-DML transactions

    def _commit_before_alone(self) -> None:
        saved = self.block
        self.session.exec_checked("COMMIT")
        self.block = saved

    def _reopen(self, failed: bool) -> bytes:
        """Start the client's block again after a statement that committed on its own."""
        saved = self.block
        self.session.exec_checked("BEGIN")
        if failed:
            self.session.backend_exec("SELECT standin.refuse('the statement failed', '25P02')")
        saved.kinds.add("dml")
        self.block = saved
        return b"E" if failed else b"T"

    def _dml_alone(self, sql: str) -> None:
        """Inside a block without multi-DML transactions, a DML statement commits on its own."""
        self._commit_before_alone()
        messages = self.session.backend_exec(sql)
        status = self._reopen(any(mtype == b"E" for mtype, _ in messages))
        self.session.relay(messages, status=status)

    def _reopen_after_sync(self, session) -> None:
        capture = session.start_capture()
        session.send_sync()
        messages = session.collect(capture)
        status = self._reopen(any(mtype == b"E" for mtype, _ in messages))
        session.relay(messages, status=status)

    # ----------------------------------------------------------------- COPY

    def _copy(self, node: ast.CopyStmt) -> None:
        options = {o.defname: o for o in node.options or ()}
        stream_mode = _bool_option(options.get("stream_mode"))
        on_conflict = _word(options.get("on_conflict"), "none")
        fmt = _word(options.get("format"), "text")
        if on_conflict not in ("none", "ignore", "update"):
            self.refuse(f"invalid ON_CONFLICT {on_conflict!r}: use none, ignore or update", "22023")
            return
        if fmt == "binary" and not stream_mode:
            self.refuse("BINARY import is only supported in fixed copy mode (STREAM_MODE TRUE)", "0A000")
            return
        if "on_conflict" in options and not stream_mode:
            self.refuse(f"ON_CONFLICT in COPY without STREAM_MODE needs Hologres V2.2.25 or later "
                        f"(this is {'.'.join(map(str, self.version))})", "0A000")
            return
        if stream_mode and self.version < (1, 3):
            self.refuse("fixed copy (STREAM_MODE) needs Hologres V1.3 or later", "0A000")
            return
        node.options = tuple(o for name, o in options.items() if name not in ("stream_mode", "on_conflict")) or None
        target = qualified(node.relation)
        try:
            keys = self.session.scalar(f"SELECT standin.primary_key({literal(target)}::regclass)")
            if stream_mode and on_conflict != "none" and not keys:
                self.refuse(f"ON_CONFLICT {on_conflict!r} needs a table with a primary key: {target} has none",
                            "0A000")
                return
            if stream_mode:
                self._fixed_copy(node, target, keys, on_conflict)
            else:
                self._atomic_copy(node, target, keys)
        except StandinSQLError as error:
            self.session.relay(error.messages)

    def _atomic_copy(self, node: ast.CopyStmt, target: str, keys: str | None) -> None:
        """Plain COPY: atomic; on a table with a primary key it holds a table lock until it ends."""
        session = self.session
        if self.in_block and self.multi_dml:
            if keys and target not in self.block.locked:
                session.exec_checked(f"LOCK TABLE {target} IN EXCLUSIVE MODE")
                self.block.locked.add(target)
            self.block.kinds.add("dml")
            session.forward_query(RawStream()(node))
            return
        alone = self.in_block  # without multi-DML the COPY commits on its own
        if alone:
            self._commit_before_alone()
        session.exec_checked("BEGIN")
        if keys:
            session.exec_checked(f"LOCK TABLE {target} IN EXCLUSIVE MODE")
        capture, refused = session.start_copy(RawStream()(node))
        if capture is None:  # refused before any row: end our transaction, answer as the server did
            session.backend_exec("ROLLBACK")
            session.relay(refused, status=self._reopen(True) if alone else b"I")
            return

        def finish(session, mtype: bytes, body: bytes) -> None:
            messages = session.end_copy(capture, mtype, body)
            failed = mtype == b"f" or any(m == b"E" for m, _ in messages)
            session.backend_exec("ROLLBACK" if failed else "COMMIT")
            session.relay(messages, status=self._reopen(failed) if alone else b"I")

        session.copy_end_hook = finish

    def _fixed_copy(self, node: ast.CopyStmt, target: str, keys: str | None, on_conflict: str) -> None:
        """Fixed copy: rows land through INSERT ... ON CONFLICT (row locks); outside any transaction."""
        session = self.session
        alone = self.in_block
        if alone:
            self._commit_before_alone()
        staged = session.scalar(f"SELECT standin.fixed_copy_stage({literal(target)}::regclass)")
        assert staged is not None  # the stage table's name: the function returns one or raises
        columns = [c.sval for c in node.attlist] if node.attlist else None
        if columns is None:
            names = session.scalar(f"SELECT standin.column_names({literal(target)}::regclass)") or ""
            columns = names.split("\x1f") if names else []
            node.attlist = tuple(ast.String(sval=name) for name in columns)
        node.relation = ast.RangeVar(relname=staged, schemaname="pg_temp", inh=True, relpersistence="p")
        capture, refused = session.start_copy(RawStream()(node))
        if capture is None:
            session.relay(refused, status=self._reopen(True) if alone else None)
            return
        column_array = "ARRAY[" + ", ".join(literal(c) for c in columns) + "]::text[]"

        def finish(session, mtype: bytes, body: bytes) -> None:
            messages = session.end_copy(capture, mtype, body)
            failed = mtype == b"f" or any(m == b"E" for m, _ in messages)
            if not failed:
                tag = next((wire.cstring(b)[0] for m, b in messages if m == b"C"), "COPY 0")
                applied = session.backend_exec(
                    f"SELECT standin.fixed_copy_apply({literal(target)}::regclass, {literal(staged)}, "
                    f"{column_array}, {literal(on_conflict)})")
                if any(m == b"E" for m, _ in applied):
                    messages, failed = applied, True
                else:
                    messages = [(b"C", tag.encode() + b"\0"), applied[-1]]
            session.relay(messages, status=self._reopen(failed) if alone else None)

        session.copy_end_hook = finish

    # ----------------------------------------------------------------- CREATE TABLE ... WITH (V2.1+)

    def _create_with_properties(self, node: ast.CreateStmt) -> str | None:
        if self.version < (2, 1):
            return RawStream()(node)  # PostgreSQL refuses the unknown storage parameters, as V2.0 does
        properties = [(key, _option_text(o)) for o in node.options or () if (key := o.defname) is not None]
        node.options = None
        table = qualified(node.relation)
        calls = "".join(f"; CALL set_table_property({literal(table)}, {literal(key)}, {literal(value)})"
                        for key, value in properties)
        if self.in_block:
            self.block.kinds.add("ddl")
        return RawStream()(node) + calls


def _bool_option(option: ast.DefElem | None) -> bool:
    if option is None:
        return False
    if option.arg is None:
        return True
    return str(getattr(option.arg, "sval", getattr(option.arg, "ival", ""))).lower() in ("true", "on", "1")


def _word(option: ast.DefElem | None, default: str) -> str:
    if option is None or option.arg is None:
        return default
    return str(getattr(option.arg, "sval", None) or getattr(option.arg, "ival", default)).lower()


def _option_text(option: ast.DefElem) -> str:
    arg = option.arg
    if isinstance(arg, ast.String) and arg.sval is not None:
        return arg.sval
    if isinstance(arg, ast.Integer):
        return str(arg.ival)
    if isinstance(arg, ast.Boolean):
        return "true" if arg.boolval else "false"
    return str(getattr(arg, "sval", arg))


SETUP = r"""
CREATE SCHEMA IF NOT EXISTS hologres;
CREATE TABLE IF NOT EXISTS standin.table_properties (
    table_oid oid NOT NULL, property_key text NOT NULL, property_value text NOT NULL,
    PRIMARY KEY (table_oid, property_key));
CREATE OR REPLACE VIEW hologres.hg_table_properties AS
    SELECT n.nspname::text AS table_namespace, c.relname::text AS table_name, p.property_key, p.property_value
    FROM standin.table_properties p JOIN pg_class c ON c.oid = p.table_oid
    JOIN pg_namespace n ON n.oid = c.relnamespace
    UNION ALL
    SELECT n.nspname::text, c.relname::text, k.key, CASE k.key WHEN 'table_id' THEN c.oid::text ELSE '1' END
    FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
    CROSS JOIN (VALUES ('table_id'), ('schema_version')) AS k(key)
    WHERE c.relkind IN ('r', 'p') AND n.nspname NOT IN ('pg_catalog', 'information_schema', 'standin', 'hologres')
      AND n.nspname NOT LIKE 'pg\_%';

CREATE OR REPLACE FUNCTION standin.hologres_version() RETURNS text LANGUAGE sql STABLE AS
$$ SELECT coalesce(nullif(current_setting('standin.hologres_version', true), ''), '2.2.11') $$;
CREATE OR REPLACE FUNCTION standin.version() RETURNS text LANGUAGE sql STABLE AS $$
    SELECT 'PostgreSQL 11.3 (Release-build@standin on origin/release-' || split_part(standin.hologres_version(), '.', 1)
        || '.' || split_part(standin.hologres_version(), '.', 2) || '.x) on x86_64-pc-linux-gnu, '
        || 'compiled by the pipeline stand-in (PostgreSQL ' || current_setting('server_version')
        || ' underneath), 64-bit' $$;
CREATE OR REPLACE FUNCTION standin.hg_version() RETURNS text LANGUAGE sql STABLE AS $$
    SELECT 'Hologres ' || standin.hologres_version() || ' (tag: ' || standin.hologres_version()
        || ' build: Release,standin), compatible with ' || standin.version() $$;

CREATE OR REPLACE FUNCTION standin.primary_key(rel regclass) RETURNS text LANGUAGE sql STABLE AS $$
    SELECT string_agg(quote_ident(a.attname), ', ' ORDER BY array_position(i.indkey::int2[], a.attnum))
    FROM pg_index i JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY(i.indkey)
    WHERE i.indrelid = rel AND i.indisprimary $$;
CREATE OR REPLACE FUNCTION standin.column_names(rel regclass) RETURNS text LANGUAGE sql STABLE AS $$
    SELECT string_agg(attname, E'\x1f' ORDER BY attnum) FROM pg_attribute
    WHERE attrelid = rel AND attnum > 0 AND NOT attisdropped $$;

CREATE OR REPLACE FUNCTION standin.fixed_copy_stage(rel regclass) RETURNS text LANGUAGE plpgsql AS $$
DECLARE staged text := 'standin_fixed_' || rel::oid;
BEGIN
    IF to_regclass('pg_temp.' || staged) IS NULL THEN
        EXECUTE format('CREATE TEMP TABLE %I (LIKE %s INCLUDING DEFAULTS)', staged, rel);
        EXECUTE format('ALTER TABLE pg_temp.%I ADD COLUMN standin_seq bigserial', staged);
    ELSE
        EXECUTE format('TRUNCATE pg_temp.%I', staged);
    END IF;
    RETURN staged;
END $$;

-- Fixed copy's ON_CONFLICT, row by row in arrival order: 'ignore' keeps the first row of a key, 'update' the last.
CREATE OR REPLACE FUNCTION standin.fixed_copy_apply(rel regclass, staged text, cols text[], on_conflict text)
RETURNS bigint LANGUAGE plpgsql AS $$
DECLARE keys text := standin.primary_key(rel); list text; sets text; n bigint;
BEGIN
    SELECT string_agg(quote_ident(c), ', ') INTO list FROM unnest(cols) AS c;
    IF on_conflict = 'none' OR keys IS NULL THEN
        EXECUTE format('INSERT INTO %s (%s) SELECT %s FROM pg_temp.%I ORDER BY standin_seq', rel, list, list, staged);
    ELSIF on_conflict = 'ignore' THEN
        EXECUTE format('INSERT INTO %s (%s) SELECT DISTINCT ON (%s) %s FROM pg_temp.%I ORDER BY %s, standin_seq '
                       'ON CONFLICT (%s) DO NOTHING', rel, list, keys, list, staged, keys, keys);
    ELSE
        SELECT string_agg(format('%I = EXCLUDED.%I', c, c), ', ') INTO sets FROM unnest(cols) AS c
        WHERE quote_ident(c) <> ALL (string_to_array(keys, ', '));
        EXECUTE format('INSERT INTO %s (%s) SELECT DISTINCT ON (%s) %s FROM pg_temp.%I ORDER BY %s, standin_seq DESC '
                       'ON CONFLICT (%s) %s', rel, list, keys, list, staged, keys, keys,
                       CASE WHEN sets IS NULL THEN 'DO NOTHING' ELSE 'DO UPDATE SET ' || sets END);
    END IF;
    GET DIAGNOSTICS n = ROW_COUNT;
    EXECUTE format('TRUNCATE pg_temp.%I', staged);
    RETURN n;
END $$;

-- SET_TABLE_PROPERTY: the creation-time properties only in the CREATE TABLE's own transaction.
CREATE OR REPLACE PROCEDURE standin.set_table_property(table_name text, property text, value text)
LANGUAGE plpgsql AS $$
DECLARE rel regclass := to_regclass(table_name); key text := lower(property); created_here boolean; col text;
BEGIN
    IF rel IS NULL THEN
        RAISE EXCEPTION 'relation "%" does not exist', table_name USING ERRCODE = '42P01';
    END IF;
    IF key NOT IN ('orientation', 'distribution_key', 'clustering_key', 'segment_key', 'event_time_column',
                   'bitmap_columns', 'dictionary_encoding_columns', 'time_to_live_in_seconds', 'storage_format',
                   'table_group', 'binlog.level', 'binlog.ttl', 'storage_mode') THEN
        RAISE EXCEPTION 'unsupported table property "%"', property USING ERRCODE = '22023';
    END IF;
    IF key IN ('orientation', 'distribution_key', 'clustering_key', 'segment_key', 'event_time_column',
               'table_group') THEN
        SELECT c.xmin::text = pg_current_xact_id_if_assigned()::text INTO created_here
        FROM pg_class c WHERE c.oid = rel;
        IF created_here IS NOT TRUE THEN
            RAISE EXCEPTION 'SET_TABLE_PROPERTY and CREATE TABLE statement are not in the same transaction for table %',
                table_name USING ERRCODE = '0A000';
        END IF;
    END IF;
    IF key IN ('distribution_key', 'clustering_key', 'segment_key', 'event_time_column', 'bitmap_columns',
               'dictionary_encoding_columns') THEN
        FOREACH col IN ARRAY string_to_array(value, ',') LOOP
            col := trim(both '"' from split_part(trim(col), ':', 1));
            IF col <> '' AND NOT EXISTS (SELECT 1 FROM pg_attribute WHERE attrelid = rel AND attname = col
                                         AND attnum > 0 AND NOT attisdropped) THEN
                RAISE EXCEPTION 'column "%" does not exist in table %', col, table_name USING ERRCODE = '42703';
            END IF;
        END LOOP;
    END IF;
    IF key = 'orientation' AND value NOT IN ('column', 'row', 'row,column', 'column,row') THEN
        RAISE EXCEPTION 'invalid orientation "%"', value USING ERRCODE = '22023';
    END IF;
    INSERT INTO standin.table_properties VALUES (rel, key, value)
    ON CONFLICT (table_oid, property_key) DO UPDATE SET property_value = EXCLUDED.property_value;
END $$;
"""
