"""The Redshift (Serverless) stand-in: PostgreSQL behind Redshift's documented rules.

Each rule cites its page in docs/targets.md. In short:

- no ``COPY FROM STDIN``: ``COPY table FROM 's3://...' IAM_ROLE ...`` reads the objects (every key under
  the prefix, or a MANIFEST's entries) from S3 itself, with CSV, DELIMITER, QUOTE, NULL AS, IGNOREHEADER,
  GZIP, BZIP2, ZSTD, ACCEPTINVCHARS, TIMEFORMAT/DATEFORMAT 'auto', REGION, COMPUPDATE, STATUPDATE, MAXERROR 0/1;
  a refused load fails with "Load into table 'x' failed." and its rows in ``sys_load_error_detail``
  (``stl_load_errors`` too), found by ``pg_last_copy_id()``;
- no ``INSERT ... ON CONFLICT``, no RETURNING, no DISTINCT ON, no FILTER, no arrays, no savepoints,
  no ``ON COMMIT``, no ``CREATE TABLE AS ... WITH NO DATA``; JSON, UUID and SERIAL are not types;
- primary, unique and foreign keys are declared but not enforced; NOT NULL is;
- TEXT is VARCHAR(256) and a VARCHAR's length counts bytes, not characters;
- ``TRUNCATE`` commits the transaction it runs in;
- DISTKEY, SORTKEY, DISTSTYLE, ENCODE and BACKUP are accepted;
- snapshot isolation (Serverless' default), conflicts reported as error 1023;
- ``version()`` reads like Redshift's.
"""

from __future__ import annotations

import bz2
import codecs
import json
import logging
import re
import threading
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from pglast import ast, enums, parse_sql
from pglast.parser import ParseError
from pglast.stream import RawStream

from pipeline.local.standin import wire
from pipeline.local.standin.proxy import StandinSQLError
from pipeline.local.standin.rules import Rules, contains, ident, literal

log = logging.getLogger(__name__)

UNSUPPORTED_TYPES = {"json", "jsonb", "uuid", "serial", "bigserial", "smallserial", "serial4", "serial8", "serial2",
                     "money", "xml", "bytea", "inet", "cidr", "macaddr", "tsvector", "hstore"}
ROLE_ARN = re.compile(r"^arn:aws[\w-]*:iam::\d{12}:role/[\w+=,.@/-]+$")
_MASK = re.compile(r"'(?:[^']|'')*'|\"(?:[^\"]|\"\")*\"")
_TABLE_ATTRIBUTES = re.compile(
    r"\b(?:DISTSTYLE\s+(?:AUTO|EVEN|KEY|ALL)|DISTKEY\s*\((?P<distkey>[^)]*)\)|(?:COMPOUND\s+|INTERLEAVED\s+)?"
    r"SORTKEY\s*(?:\((?P<sortkey>[^)]*)\)|AUTO)|ENCODE\s+\w+|BACKUP\s+(?:YES|NO))|\b(?:DISTKEY|SORTKEY)\b",
    re.IGNORECASE)
_COPY_HEAD = re.compile(
    r"""^\s*COPY\s+(?P<table>(?:"(?:[^"]|"")*"|[\w$]+)(?:\s*\.\s*(?:"(?:[^"]|"")*"|[\w$]+))?)\s*"""
    r"""(?:\((?P<columns>[^)]*)\))?\s*FROM\s+'(?P<source>(?:[^']|'')*)'(?P<rest>.*)$""",
    re.IGNORECASE | re.DOTALL)
_TOKEN = re.compile(r"'(?:[^']|'')*'|[^\s,;]+")
_LOAD_CONTEXT = re.compile(r"line (?P<line>\d+)(?:, column (?P<column>[^:]+?)(?:: \"(?P<value>.*)\")?)?(?::|$)")

_KEYS = (enums.ConstrType.CONSTR_PRIMARY, enums.ConstrType.CONSTR_UNIQUE, enums.ConstrType.CONSTR_FOREIGN)
_s3_lock = threading.Lock()
_s3_client = None


def s3_client():
    """boto3's S3 client from the stand-in's environment (AWS_ENDPOINT_URL on the local stack)."""
    global _s3_client
    with _s3_lock:
        if _s3_client is None:
            import boto3

            _s3_client = boto3.session.Session().client("s3")
        return _s3_client


@dataclass
class CopyRequest:
    """A Redshift COPY FROM S3, as parsed."""

    table: str
    columns: list[str]
    source: str
    csv: bool = False
    quote: str = '"'
    delimiter: str | None = None
    null_as: str = "\\N"
    ignore_header: int = 0
    compression: str | None = None
    accept_invalid: str | None = None
    manifest: bool = False
    options: dict[str, str] = field(default_factory=dict)

    @property
    def table_name(self) -> str:
        return _unquote(re.split(r"\s*\.\s*(?=(?:[^\"]*\"[^\"]*\")*[^\"]*$)", self.table)[-1])


# "The maximum size for a single Amazon Redshift SQL statement is 16 MB." (Amazon Redshift SQL)
MAX_STATEMENT_BYTES = 16 << 20


class RedshiftRules(Rules):
    flavor = "redshift"

    # ----------------------------------------------------------------- refusals

    def refusal(self, node: ast.Node, *, multi: bool = False) -> tuple[str, str] | None:
        if isinstance(node, ast.CopyStmt):
            if node.filename is None:
                return f'syntax error at or near "{"STDIN" if node.is_from else "STDOUT"}"', "42601"
            if not node.filename.startswith("s3://"):
                return "COPY from a server file is not supported; load from Amazon S3", "0A000"
        if isinstance(node, ast.InsertStmt) and node.onConflictClause is not None:
            return 'syntax error at or near "ON"', "42601"
        if isinstance(node, ast.InsertStmt | ast.UpdateStmt | ast.DeleteStmt) and node.returningClause:
            return 'syntax error at or near "RETURNING"', "42601"
        if isinstance(node, ast.TransactionStmt) and node.kind in (
                enums.TransactionStmtKind.TRANS_STMT_SAVEPOINT, enums.TransactionStmtKind.TRANS_STMT_ROLLBACK_TO,
                enums.TransactionStmtKind.TRANS_STMT_RELEASE):
            return "SAVEPOINT is not supported", "0A000"
        if isinstance(node, ast.CreateStmt) and node.oncommit not in (None, enums.OnCommitAction.ONCOMMIT_NOOP):
            return 'syntax error at or near "ON"', "42601"
        if isinstance(node, ast.CreateTableAsStmt) and node.into is not None and node.into.skipData:
            return 'syntax error at or near "WITH"', "42601"
        if isinstance(node, ast.MergeStmt) and not isinstance(node.sourceRelation, ast.RangeVar):
            return "source_table of MERGE can't be a view or a subquery", "0A000"
        if isinstance(node, ast.LockStmt) and node.mode != 8:
            return 'syntax error at or near "IN"', "42601"
        if contains(node, lambda n: isinstance(n, ast.SelectStmt) and n.distinctClause
                    and any(item is not None for item in n.distinctClause)):
            return "SELECT DISTINCT ON is not supported", "0A000"
        if contains(node, lambda n: isinstance(n, ast.FuncCall) and n.agg_filter is not None):
            return 'syntax error at or near "FILTER"', "42601"
        if contains(node, lambda n: isinstance(n, ast.A_ArrayExpr)):
            return "Redshift does not support arrays (ARRAY[...])", "0A000"
        bad_type = _unsupported_type(node)
        if bad_type is not None:
            return f'Column has unsupported type "{bad_type}"', "0A000"
        return None

    def text_refusal(self, sql: str) -> tuple[str, str] | None:
        size = len(sql.encode())
        if size <= MAX_STATEMENT_BYTES:
            return None
        return (f"Statement is too large. Statement Size: {size} bytes. Maximum Allowed: {MAX_STATEMENT_BYTES} bytes",
                "42601")

    def rewrite_error(self, fields: dict[str, str]) -> dict[str, str]:
        fields = super().rewrite_error(fields)
        code = fields.get("C")
        if code == "40001":
            table = fields.get("t", "")
            fields = {**fields, "M": "1023",
                      "D": f"Serializable isolation violation on table{' - ' + table if table else ''}"}
        elif code == "21000" and "MERGE" in fields.get("M", ""):
            fields = {**fields, "M": "Found multiple matches to update the same tuple."}
        elif code == "23514" and fields.get("n", "").startswith("standin_bytes_"):
            column = fields["n"].removeprefix("standin_bytes_")
            fields = {code: value for code, value in fields.items() if code not in "Dn"}
            fields.update({"C": "22001", "M": f"value too long for type character varying: column {column} "
                                              "(Redshift counts a VARCHAR's length in bytes)"})
        return fields

    # ----------------------------------------------------------------- statements

    def on_statement(self, sql: str, node: ast.Node) -> None:
        if isinstance(node, ast.CopyStmt) and node.is_from and (node.filename or "").startswith("s3://"):
            self._copy_from_s3(sql)
            return
        refusal = self.refusal(node)
        if refusal is not None:
            self.refuse(*refusal)
            return
        if isinstance(node, ast.CreateStmt):
            self._create_table(node, [], [])
            return
        if isinstance(node, ast.TruncateStmt) and self.session.tx_status == b"T":
            # "TRUNCATE commits the transaction in which it is run."
            try:
                self.session.exec_checked("COMMIT")
            except StandinSQLError as error:
                self.session.relay(error.messages)
                return
        self.session.forward_query(sql)

    def on_unparsed(self, sql: str) -> None:
        if re.match(r"\s*COPY\b", sql, re.IGNORECASE):
            self._copy_from_s3(sql)
            return
        if re.match(r"\s*CREATE\s+(?:(?:LOCAL\s+)?(?:TEMP|TEMPORARY)\s+)?TABLE\b", sql, re.IGNORECASE):
            masked, literals = _mask(sql)
            distkeys, sortkeys = [], []

            def strip(match: re.Match) -> str:
                if match.group("distkey"):
                    distkeys.append(_unmask(match.group("distkey"), literals))
                if match.group("sortkey"):
                    sortkeys.append(_unmask(match.group("sortkey"), literals))
                return " "

            stripped = _unmask(_TABLE_ATTRIBUTES.sub(strip, masked), literals)
            try:
                statements = parse_sql(stripped)
            except ParseError:
                self.session.forward_query(sql)  # PostgreSQL reports the syntax error
                return
            node = statements[0].stmt if len(statements) == 1 else None
            if isinstance(node, ast.CreateStmt):
                refusal = self.refusal(node)
                if refusal is not None:
                    self.refuse(*refusal)
                    return
                self._create_table(node, distkeys, sortkeys)
                return
            if isinstance(node, ast.CreateTableAsStmt):
                self.on_statement(stripped, node)
                return
        self.session.forward_query(sql)

    def _create_table(self, node: ast.CreateStmt, distkeys: list[str], sortkeys: list[str]) -> None:
        """Keys become informational, TEXT becomes VARCHAR(256), VARCHAR lengths count bytes."""
        names = {element.colname for element in node.tableElts or () if isinstance(element, ast.ColumnDef)}
        for listed in [*distkeys, *sortkeys]:
            for column in (_unquote(c.strip()) for c in listed.split(",")):
                if column and column not in names:
                    self.refuse(f'column "{column}" named in DISTKEY or SORTKEY does not exist', "42703")
                    return
        elements = []
        checks = []
        for element in node.tableElts or ():
            if isinstance(element, ast.Constraint):
                if element.contype in _KEYS:
                    continue  # informational only: not enforced
                elements.append(element)
                continue
            if isinstance(element, ast.ColumnDef):
                element.constraints = tuple(c for c in element.constraints or () if c.contype not in _KEYS) or None
                type_node, name = element.typeName, element.colname
                assert type_node is not None and type_node.names and name is not None  # a parsed column has both
                type_name = type_node.names[-1].sval
                if type_name == "text" or (type_name == "varchar" and not type_node.typmods):
                    type_node = element.typeName = ast.TypeName(
                        names=(ast.String(sval="varchar"),), typmods=(ast.A_Const(val=ast.Integer(ival=256)),),
                        typemod=-1)
                    type_name = "varchar"
                if type_name == "varchar":
                    assert type_node.typmods  # varchar(n), or the varchar(256) just given
                    width = type_node.typmods[0].val.ival
                    checks.append(f"CONSTRAINT {ident('standin_bytes_' + name)} "
                                  f"CHECK (octet_length({ident(name)}) <= {width})")
            elements.append(element)
        node.tableElts = tuple(elements)
        statement = RawStream()(node)
        if checks:
            head, _, tail = statement.rpartition(")")
            statement = head + (", " if elements else "") + ", ".join(checks) + ")" + tail
        self.session.forward_query(statement)

    # ----------------------------------------------------------------- COPY FROM S3

    def _copy_from_s3(self, sql: str) -> None:
        session = self.session
        try:
            request = parse_copy(sql)
        except ValueError as error:
            self.refuse(str(error), "42601")
            return
        except NotImplementedError as error:
            self.refuse(str(error), "0A000")
            return
        if session.tx_status == b"E":
            session.forward_query(sql)  # the block is aborted: PostgreSQL says so
            return
        own_transaction = session.tx_status == b"I"
        try:
            files = list_files(request)
        except LoadFailure as failure:
            self.refuse(failure.message, "XX000")
            return
        try:
            if own_transaction:
                session.exec_checked("BEGIN")
            query_id = int(session.scalar("SELECT nextval('standin.query_id')") or 0)
            table_oid = session.scalar(f"SELECT {literal(request.table)}::regclass::oid")
            total = 0
            for uri in files:
                messages = session.copy_in(copy_statement(request), object_lines(request, uri))
                refused = next((wire.error_fields(body) for mtype, body in messages if mtype == b"E"), None)
                if refused is not None:
                    self._load_failed(request, uri, refused, query_id, table_oid, own_transaction, messages)
                    return
                tag = next((wire.cstring(body)[0] for mtype, body in messages if mtype == b"C"), "COPY 0")
                total += int(tag.split()[-1])
            session.exec_checked(
                "INSERT INTO standin.session_copies (pid, backend_start, last_copy_id, last_copy_count) "
                f"SELECT pg_backend_pid(), backend_start, {query_id}, {total} FROM pg_stat_activity "
                "WHERE pid = pg_backend_pid() ON CONFLICT (pid) DO UPDATE SET "
                "backend_start = EXCLUDED.backend_start, last_copy_id = EXCLUDED.last_copy_id, "
                "last_copy_count = EXCLUDED.last_copy_count")
            final = session.exec_checked("COMMIT") if own_transaction else session.backend_exec("SELECT 1")
            session.to_client(wire.command_complete(f"COPY {total}"), wire.ready_for_query(final[-1][1]))
        except StandinSQLError as error:
            if own_transaction:
                session.backend_exec("ROLLBACK")
                error.messages[-1] = (b"Z", b"I")
            session.relay(error.messages)
        except LoadFailure as failure:
            fields = {"S": "ERROR", "V": "ERROR", "C": "XX000", "M": failure.message}
            status = session.backend_exec("ROLLBACK")[-1][1] if own_transaction else \
                session.backend_exec(f"SELECT standin.refuse({literal(failure.message)}, 'XX000')")[-1][1]
            session.to_client(wire.error_response(fields), wire.ready_for_query(status))

    def _load_failed(self, request: CopyRequest, uri: str, error: dict[str, str], query_id: int,
                     table_oid: str | None, own_transaction: bool, messages: list) -> None:
        """Record the refused row as Redshift does, and fail the load with Redshift's message."""
        session = self.session
        detail = load_error_detail(request, uri, error)
        status = messages[-1][1]
        if own_transaction:
            status = session.backend_exec("ROLLBACK")[-1][1]
        self._record_load_error(query_id, table_oid, detail)
        message = (f"Load into table '{request.table_name}' failed.  "
                   "Check 'sys_load_error_detail' system table for details.")
        fields = {"S": "ERROR", "V": "ERROR", "C": "XX000", "M": message,
                  "D": f"{detail['error_message']} (file {uri}, line {detail['line_number']}, "
                       f"column {detail['column_name'] or '?'})"}
        session.to_client(wire.error_response(fields), wire.ready_for_query(status))

    def _record_load_error(self, query_id: int, table_oid: str | None, detail: dict) -> None:
        import psycopg

        conninfo = self.session.options.side_conninfo.format(database=self.session.database)
        with psycopg.connect(conninfo, autocommit=True) as side:
            side.execute(
                "INSERT INTO standin.load_errors (query_id, session_id, table_id, file_name, line_number, column_name, "
                "column_type, column_length, position, raw_line, raw_field_value, error_code, error_message) "
                "VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
                (query_id, self.session.backend_pid, table_oid, detail["file_name"], detail["line_number"],
                 detail["column_name"], detail["column_type"], detail["column_length"], 0, detail["raw_line"],
                 detail["raw_field_value"], detail["error_code"], detail["error_message"]))
            side.execute(
                "INSERT INTO standin.session_copies (pid, backend_start, last_copy_id, last_copy_count) "
                "SELECT pid, backend_start, %s, 0 FROM pg_stat_activity WHERE pid = %s "
                "ON CONFLICT (pid) DO UPDATE SET backend_start = EXCLUDED.backend_start, "
                "last_copy_id = EXCLUDED.last_copy_id, last_copy_count = 0", (query_id, self.session.backend_pid))
            if detail["column_name"] and table_oid:
                row = side.execute(
                    "SELECT t.typname, CASE WHEN a.atttypmod > 4 THEN a.atttypmod - 4 END FROM pg_attribute a "
                    "JOIN pg_type t ON t.oid = a.atttypid WHERE a.attrelid = %s::oid AND a.attname = %s",
                    (table_oid, detail["column_name"])).fetchone()
                if row:
                    side.execute("UPDATE standin.load_errors SET column_type = %s, column_length = %s "
                                 "WHERE query_id = %s", (row[0][:10], row[1], query_id))


class LoadFailure(Exception):
    def __init__(self, message: str):
        super().__init__(message)
        self.message = message


def parse_copy(sql: str) -> CopyRequest:
    """Redshift's COPY FROM S3 syntax; unknown or unemulated parameters raise."""
    head = _COPY_HEAD.match(sql.strip().rstrip(";"))
    if head is None:
        raise ValueError("syntax error in COPY: expected COPY table [(columns)] FROM 's3://...' ...")
    source = head.group("source").replace("''", "'")
    if not source.startswith("s3://"):
        raise ValueError(f"COPY FROM {source!r}: only Amazon S3 sources ('s3://bucket/prefix') are emulated")
    columns = [_unquote(c.strip()) for c in head.group("columns").split(",")] if head.group("columns") else []
    request = CopyRequest(table=head.group("table"), columns=columns, source=source)
    tokens = _TOKEN.findall(head.group("rest"))
    position = 0

    def word() -> str:
        return tokens[position].upper() if position < len(tokens) else ""

    def take_value(name: str) -> str:
        nonlocal position
        if word() == "AS":
            position += 1
        if position >= len(tokens):
            raise ValueError(f"COPY parameter {name} needs a value")
        value = tokens[position]
        position += 1
        return _redshift_string(value[1:-1]) if value.startswith("'") else value

    authorised = False
    while position < len(tokens):
        keyword = word()
        position += 1
        if keyword == "IAM_ROLE":
            role = take_value(keyword)
            if role.upper() != "DEFAULT" and not all(ROLE_ARN.match(r) for r in role.split(",")):
                raise ValueError(f"IAM_ROLE {role!r} is not an IAM role ARN (arn:aws:iam::<account>:role/<name>)")
            authorised = True
        elif keyword == "CREDENTIALS" or keyword in ("ACCESS_KEY_ID", "SECRET_ACCESS_KEY", "SESSION_TOKEN"):
            take_value(keyword)
            authorised = True
        elif keyword == "FORMAT":
            if word() == "AS":
                position += 1
            continue
        elif keyword == "CSV":
            request.csv = True
            if word() == "QUOTE":
                position += 1
                request.quote = take_value("QUOTE")
        elif keyword == "QUOTE":
            request.quote = take_value(keyword)
        elif keyword == "DELIMITER":
            request.delimiter = take_value(keyword)
        elif keyword in ("GZIP", "BZIP2", "ZSTD"):
            request.compression = keyword
        elif keyword == "NULL":
            request.null_as = take_value(keyword)
        elif keyword == "IGNOREHEADER":
            request.ignore_header = int(take_value(keyword))
        elif keyword in ("TIMEFORMAT", "DATEFORMAT"):
            value = take_value(keyword)
            if value != "auto":
                raise NotImplementedError(f"{keyword} {value!r}: the stand-in emulates only 'auto'")
        elif keyword == "ACCEPTINVCHARS":
            request.accept_invalid = "?"
            if word() == "AS" or (position < len(tokens) and tokens[position].startswith("'")):
                request.accept_invalid = take_value(keyword)
        elif keyword == "MANIFEST":
            request.manifest = True
        elif keyword == "REGION":
            take_value(keyword)
        elif keyword in ("COMPUPDATE", "STATUPDATE"):
            if word() in ("ON", "OFF", "TRUE", "FALSE", "PRESET"):
                position += 1
        elif keyword == "MAXERROR":
            if int(take_value(keyword)) > 1:
                raise NotImplementedError("MAXERROR above 1 is not emulated by the stand-in")
        elif keyword in ("JSON", "AVRO", "PARQUET", "ORC", "FIXEDWIDTH", "SHAPEFILE", "ZSTD", "LZOP", "ENCRYPTED",
                         "EMPTYASNULL", "BLANKSASNULL", "TRUNCATECOLUMNS", "FILLRECORD", "EXPLICIT_IDS",
                         "REMOVEQUOTES", "ESCAPE", "TRIMBLANKS", "ROUNDEC", "IGNOREBLANKLINES", "ACCEPTANYDATE",
                         "NOLOAD", "COMPROWS", "ENCODING", "MASTER_SYMMETRIC_KEY", "SSH", "READRATIO"):
            raise NotImplementedError(f"COPY parameter {keyword} is not emulated by the stand-in")
        else:
            raise ValueError(f'syntax error at or near "{tokens[position - 1]}"')
    if not authorised:
        raise ValueError("COPY from Amazon S3 needs IAM_ROLE or CREDENTIALS")
    return request


def _redshift_string(text: str) -> str:
    """A Redshift string literal's value: '' is a quote; backslash escapes ``\\\\`` and octal ``\\ddd``."""
    text = text.replace("''", "'")
    return re.sub(r"\\\\|\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)) if m.group(1) else "\\", text)


def _split_uri(uri: str) -> tuple[str, str]:
    bucket, _, key = uri.removeprefix("s3://").partition("/")
    return bucket, key


def list_files(request: CopyRequest) -> list[str]:
    """The objects a COPY loads: a manifest's entries, or every key that starts with the prefix."""
    client = s3_client()
    bucket, key = _split_uri(request.source)
    if request.manifest:
        try:
            body = client.get_object(Bucket=bucket, Key=key)["Body"].read()
            entries = json.loads(body)["entries"]
        except Exception as error:
            raise LoadFailure(f"Problem reading manifest file {request.source}: {_s3_message(error)}") from None
        files = []
        for entry in entries:
            entry_bucket, entry_key = _split_uri(entry["url"])
            try:
                client.head_object(Bucket=entry_bucket, Key=entry_key)
            except Exception as error:
                if entry.get("mandatory", False):
                    raise LoadFailure(f"Manifest file {request.source}: mandatory file {entry['url']} "
                                      f"is not available: {_s3_message(error)}") from None
                continue
            files.append(entry["url"])
        return files
    files = []
    try:
        for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=key):
            files += [f"s3://{bucket}/{item['Key']}" for item in page.get("Contents", ())
                      if not item["Key"].endswith("/")]
    except Exception as error:
        raise LoadFailure(f"S3ServiceException: {_s3_message(error)}") from None
    if not files:
        raise LoadFailure(f"The specified S3 prefix '{key}' does not exist")
    return files


def object_lines(request: CopyRequest, uri: str, *, skip_header: bool = True) -> Iterator[bytes]:
    """An object's bytes, decompressed, header lines dropped, invalid UTF-8 replaced when asked."""
    bucket, key = _split_uri(uri)
    try:
        body = s3_client().get_object(Bucket=bucket, Key=key)["Body"]
    except Exception as error:
        raise LoadFailure(f"S3ServiceException reading {uri}: {_s3_message(error)}") from None
    chunks: Iterator[bytes] = iter(lambda: body.read(1 << 18), b"")
    if request.compression == "GZIP":
        chunks = _gunzip(chunks, uri)
    elif request.compression == "BZIP2":
        chunks = _bunzip(chunks, uri)
    elif request.compression == "ZSTD":
        chunks = _unzstd(body, uri)
    if skip_header and request.ignore_header:
        chunks = _skip_lines(chunks, request.ignore_header)
    if request.accept_invalid is not None:
        chunks = _replace_invalid(chunks, request.accept_invalid)
    return chunks


def _gunzip(chunks: Iterator[bytes], uri: str) -> Iterator[bytes]:
    decompressor = zlib.decompressobj(16 + zlib.MAX_WBITS)
    try:
        for chunk in chunks:
            while chunk:
                yield decompressor.decompress(chunk)
                chunk = decompressor.unused_data
                if decompressor.eof:
                    decompressor = zlib.decompressobj(16 + zlib.MAX_WBITS)  # the next gzip member
                else:
                    break
        yield decompressor.flush()
    except zlib.error as error:
        raise LoadFailure(f"gzip: {uri} is not valid gzip data ({error})") from None


def _bunzip(chunks: Iterator[bytes], uri: str) -> Iterator[bytes]:
    decompressor = bz2.BZ2Decompressor()
    try:
        for chunk in chunks:
            while chunk:
                yield decompressor.decompress(chunk)
                chunk = decompressor.unused_data if decompressor.eof else b""
                if decompressor.eof:
                    decompressor = bz2.BZ2Decompressor()
    except (OSError, EOFError) as error:
        raise LoadFailure(f"bzip2: {uri} is not valid bzip2 data ({error})") from None


def _unzstd(body: Any, uri: str) -> Iterator[bytes]:
    import pyarrow as pa

    stream = pa.CompressedInputStream(pa.PythonFile(body, mode="r"), "zstd")
    try:
        while piece := stream.read(1 << 18):
            yield piece
    except OSError as error:
        raise LoadFailure(f"zstd: {uri} is not valid zstd data ({error})") from None


def _skip_lines(chunks: Iterator[bytes], count: int) -> Iterator[bytes]:
    for chunk in chunks:
        while count and chunk:
            newline = chunk.find(b"\n")
            if newline < 0:
                chunk = b""
                break
            chunk = chunk[newline + 1:]
            count -= 1
        if chunk:
            yield chunk


_INVALID_BYTE = re.compile("[\udc80-\udcff]")  # what surrogateescape makes of each byte that is not UTF-8


def _replace_invalid(chunks: Iterator[bytes], replacement: str) -> Iterator[bytes]:
    """ACCEPTINVCHARS: each byte that is not valid UTF-8 becomes the replacement character."""
    decoder = codecs.getincrementaldecoder("utf-8")("surrogateescape")
    for chunk in chunks:
        yield _INVALID_BYTE.sub(replacement, decoder.decode(chunk)).encode()
    yield _INVALID_BYTE.sub(replacement, decoder.decode(b"", final=True)).encode()


def copy_statement(request: CopyRequest) -> str:
    columns = f" ({', '.join(ident(c) for c in request.columns)})" if request.columns else ""
    if request.csv:
        delimiter = request.delimiter or ","
        options = f"FORMAT csv, DELIMITER {literal(delimiter)}, QUOTE {literal(request.quote)}, " \
                  f"ESCAPE {literal(request.quote)}, NULL {literal(request.null_as)}"
    else:
        options = f"FORMAT text, DELIMITER {literal(request.delimiter or '|')}, NULL {literal(request.null_as)}"
    return f"COPY {request.table}{columns} FROM STDIN ({options})"


_ERROR_CODES = {
    "22001": (1204, "String length exceeds DDL length"),
    "22003": (1204, "Input data exceeded the acceptable range for the data type"),
    "23502": (1213, "Missing data for not-null field"),
    "22007": (1206, "Invalid timestamp format or value"),
    "22008": (1206, "Invalid timestamp format or value"),
    "22021": (1220, "String contains invalid or unsupported UTF8 codepoints"),
}
_TYPE_NAMES = {"bigint": "Long", "integer": "Integer", "smallint": "Short", "numeric": "Numeric",
               "double precision": "Double", "real": "Float", "boolean": "Boolean"}


def load_error_detail(request: CopyRequest, uri: str, error: dict[str, str]) -> dict:
    """A sys_load_error_detail row from PostgreSQL's refusal of one row."""
    context = error.get("W", "")
    match = _LOAD_CONTEXT.search(context)
    line = int(match.group("line")) + request.ignore_header if match else None
    column = match.group("column") if match and match.group("column") else None
    value = match.group("value") if match and match.group("value") is not None else None
    sqlstate = error.get("C", "")
    message = error.get("M", "")
    code, reason = _ERROR_CODES.get(sqlstate, (1216, "Input line is not valid"))
    if sqlstate == "22P02":
        typed = re.match(r'invalid input syntax for type ([\w ]+): "(.*)"', message)
        type_name = _TYPE_NAMES.get(typed.group(1), typed.group(1).title()) if typed else "?"
        shown = typed.group(2) if typed else (value or "")
        code = 1207 if type_name in ("Long", "Integer", "Short") else 1208
        reason = f"Invalid digit, Value '{shown[:1] or ' '}', Pos 0, Type: {type_name}"
        value = shown if value is None else value
    elif sqlstate == "22P04":
        code, reason = (1202, "Extra column(s) found") if "extra data" in message else (1214, "Delimiter not found")
    elif sqlstate == "23514" and error.get("n", "").startswith("standin_bytes_"):
        column = error["n"].removeprefix("standin_bytes_")
        code, reason = 1204, "String length exceeds DDL length"
    raw_line = _raw_line(request, uri, line) if line else None
    return {"file_name": uri, "line_number": line, "column_name": column, "column_type": None,
            "column_length": None, "raw_line": raw_line, "raw_field_value": (value or "")[:1024] or None,
            "error_code": code, "error_message": f"{reason} ({message})"[:512]}


def _raw_line(request: CopyRequest, uri: str, line: int) -> str | None:
    """The file's physical line ``line`` (1-based), read again: errors are rare, memory stays flat."""
    seen = 1
    pending = b""
    try:
        for chunk in object_lines(request, uri, skip_header=False):
            pending += chunk
            while True:
                newline = pending.find(b"\n")
                if newline < 0:
                    break
                if seen == line:
                    return pending[:newline].decode("utf-8", "replace")[:1024]
                pending = pending[newline + 1:]
                seen += 1
    except LoadFailure:
        return None
    return pending.decode("utf-8", "replace")[:1024] if seen == line and pending else None


def _s3_message(error: Exception) -> str:
    response = getattr(error, "response", None)
    if isinstance(response, dict) and "Error" in response:
        return f"{response['Error'].get('Message', '')} ({response['Error'].get('Code', '')})"
    return str(error)


def _mask(sql: str) -> tuple[str, list[str]]:
    literals: list[str] = []

    def keep(match: re.Match) -> str:
        literals.append(match.group(0))
        return f"\x00{len(literals) - 1}\x00"

    return _MASK.sub(keep, sql), literals


def _unmask(text: str, literals: list[str]) -> str:
    return re.sub(r"\x00(\d+)\x00", lambda m: literals[int(m.group(1))], text)


def _unquote(name: str) -> str:
    return name[1:-1].replace('""', '"') if name.startswith('"') and name.endswith('"') else name.lower()


def _unsupported_type(node: ast.Node) -> str | None:
    found: list[str] = []

    def check(n) -> bool:
        if isinstance(n, ast.TypeName) and n.names:
            name = n.names[-1].sval
            if name in UNSUPPORTED_TYPES or n.arrayBounds:
                found.append(name + ("[]" if n.arrayBounds else ""))
                return True
        return False

    contains(node, check)
    return found[0] if found else None


SETUP = r"""
CREATE SEQUENCE IF NOT EXISTS standin.query_id START 100000;
CREATE TABLE IF NOT EXISTS standin.load_errors (
    query_id bigint NOT NULL, session_id int, start_time timestamp NOT NULL DEFAULT now(), table_id oid,
    file_name text, line_number bigint, column_name text, column_type text, column_length text, position int,
    raw_line text, raw_field_value text, error_code int, error_message text,
    user_name text NOT NULL DEFAULT current_user, database_name text NOT NULL DEFAULT current_database());
CREATE OR REPLACE VIEW standin.sys_load_error_detail AS
    SELECT 100 AS user_id, query_id, query_id AS transaction_id, session_id, database_name, table_id::int AS table_id,
           start_time, file_name, line_number, column_name, column_type, column_length, position, error_code,
           error_message
    FROM standin.load_errors;
CREATE OR REPLACE VIEW standin.stl_load_errors AS
    SELECT 100 AS userid, 0 AS slice, table_id::int AS tbl, start_time AS starttime, session_id AS session,
           query_id AS query, file_name AS filename, line_number, column_name AS colname, column_type AS type,
           column_length AS col_length, position, raw_line, raw_field_value, error_code AS err_code,
           left(error_message, 100) AS err_reason, 0 AS is_partial, 0 AS start_offset
    FROM standin.load_errors;
CREATE TABLE IF NOT EXISTS standin.session_copies (
    pid int PRIMARY KEY, backend_start timestamptz, last_copy_id bigint NOT NULL, last_copy_count bigint NOT NULL);
CREATE OR REPLACE FUNCTION standin.pg_last_copy_id() RETURNS bigint LANGUAGE sql STABLE AS $$
    SELECT coalesce((SELECT c.last_copy_id FROM standin.session_copies c JOIN pg_stat_activity a
                     ON a.pid = c.pid AND a.backend_start = c.backend_start WHERE c.pid = pg_backend_pid()), -1) $$;
CREATE OR REPLACE FUNCTION standin.pg_last_copy_count() RETURNS bigint LANGUAGE sql STABLE AS $$
    SELECT coalesce((SELECT c.last_copy_count FROM standin.session_copies c JOIN pg_stat_activity a
                     ON a.pid = c.pid AND a.backend_start = c.backend_start WHERE c.pid = pg_backend_pid()), 0) $$;
CREATE OR REPLACE FUNCTION standin.version() RETURNS text LANGUAGE sql STABLE AS $$
    SELECT 'PostgreSQL 8.0.2 on i686-pc-linux-gnu, compiled by GCC gcc (GCC) 3.4.2 20041017 (Red Hat 3.4.2-6.fc3), '
        || 'Redshift 1.0.122914 (pipeline stand-in on PostgreSQL ' || current_setting('server_version') || ')' $$;
DO $$ BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace
                   WHERE n.nspname = 'standin' AND t.typname = 'super') THEN
        CREATE DOMAIN standin.super AS jsonb;
    END IF;
END $$;
"""
