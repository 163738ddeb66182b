"""What the stand-ins share: statement classification, refusals, the per-transaction state.

A target's rules see every statement a client sends (``Query`` and ``Parse``). Statements are parsed
with pglast (PostgreSQL's own parser); what PostgreSQL's grammar cannot parse (Redshift's COPY FROM
S3, its table attributes) goes to :meth:`Rules.on_unparsed`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from pglast import ast, parse_sql, visitors
from pglast.parser import ParseError

from pipeline.local.standin import wire

if TYPE_CHECKING:
    from pipeline.local.standin.proxy import Session

DDL_NODES = (
    ast.CreateStmt, ast.CreateTableAsStmt, ast.AlterTableStmt, ast.DropStmt, ast.RenameStmt, ast.IndexStmt,
    ast.CreateSchemaStmt, ast.CommentStmt, ast.ViewStmt, ast.CallStmt, ast.AlterObjectSchemaStmt, ast.GrantStmt,
    ast.CreateDomainStmt, ast.CreateFunctionStmt, ast.CreateSeqStmt,
)
DML_NODES = (ast.InsertStmt, ast.UpdateStmt, ast.DeleteStmt, ast.MergeStmt)
COMMANDS = {ast.InsertStmt: "INSERT", ast.UpdateStmt: "UPDATE", ast.DeleteStmt: "DELETE", ast.MergeStmt: "MERGE",
            ast.CopyStmt: "COPY", ast.TruncateStmt: "TRUNCATE"}
_PLACEHOLDER = re.compile(r"\$(\d+)")
STANDIN_FUNCTIONS = ("refuse", "set_table_property", "fixed_copy_apply", "fixed_copy_stage")


def literal(text: str) -> str:
    """A SQL string literal (standard_conforming_strings is on in every stand-in database)."""
    return "'" + text.replace("'", "''") + "'"


def ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def qualified(relation: ast.RangeVar | None) -> str:
    # pglast types every field Optional (for nodes built empty); a parsed statement has the relation it names.
    assert relation is not None and relation.relname is not None
    parts = [relation.schemaname, relation.relname] if relation.schemaname else [relation.relname]
    return ".".join(ident(part) for part in parts)


def statement_node(statement: ast.RawStmt) -> ast.Node:
    """What a parsed statement is (pglast types it Optional, for a RawStmt built empty)."""
    assert statement.stmt is not None
    return statement.stmt


def tables_of(node: ast.Node) -> list[str]:
    """Every table a statement names, qualified and quoted, in order of appearance."""
    found: dict[str, None] = {}

    class Relations(visitors.Visitor):
        def visit_RangeVar(self, ancestors, node):
            found[qualified(node)] = None

    Relations()(node)
    return list(found)


def contains(node: ast.Node, predicate) -> bool:
    hit = False

    class Finder(visitors.Visitor):
        def visit(self, ancestors, node):
            nonlocal hit
            if predicate(node):
                hit = True

    Finder()(node)
    return hit


@dataclass
class Block:
    """What one explicit transaction block has done so far."""

    kinds: set[str] = field(default_factory=set)  # "ddl", "dml"
    locked: set[str] = field(default_factory=set)  # tables locked for the block
    settings: dict[str, str] = field(default_factory=dict)  # SET LOCAL values


class Rules:
    """The plain forwarding behaviour; a target overrides the hooks it needs."""

    flavor = ""

    def __init__(self, session: Session):
        self.session = session
        self.settings: dict[str, str] = {}
        self.block = Block()
        session.status_listeners.append(self._status)

    def _status(self, status: bytes) -> None:
        if status == b"I":
            self.block = Block()

    @property
    def in_block(self) -> bool:
        return self.session.tx_status in (b"T", b"E")

    def setting(self, name: str, default: str = "") -> str:
        return self.block.settings.get(name, self.settings.get(name, default))

    # ----------------------------------------------------------------- hooks

    def on_query(self, sql: str) -> None:
        refusal = self.text_refusal(sql)
        if refusal is not None:
            self.refuse(*refusal)
            return
        try:
            statements = parse_sql(sql)
        except ParseError:
            self.on_unparsed(sql)
            return
        if len(statements) == 1:
            self.on_statement(sql, statement_node(statements[0]))
            return
        for statement in statements:  # a multi-statement string: each must pass on its own
            refusal = self.refusal(statement_node(statement), multi=True)
            if refusal is not None:
                self.refuse(*refusal)
                return
        self.session.forward_query(sql)

    def on_statement(self, sql: str, node: ast.Node) -> None:
        refusal = self.refusal(node)
        if refusal is not None:
            self.refuse(*refusal)
            return
        self.session.forward_query(sql)

    def on_unparsed(self, sql: str) -> None:
        self.session.forward_query(sql)  # PostgreSQL answers with its own syntax error

    def on_parse(self, name: str, sql: str, oids: list[int]) -> None:
        refusal = self.text_refusal(sql)
        if refusal is None:
            try:
                statements = parse_sql(sql)
            except ParseError:
                statements = ()
            if len(statements) == 1:
                refusal = self.refusal(statement_node(statements[0]))
        if refusal is not None:  # refused when it is bound, so Parse/Bind/Execute gets one error
            sql = refusal_sql(*refusal, parameters=max([len(oids), *map(int, _PLACEHOLDER.findall(sql))]))
        self.session.forward(wire.build_parse(name, sql, oids))

    def on_bind(self, statement: str) -> None:
        """A named statement was checked when it was parsed."""

    def refusal(self, node: ast.Node, *, multi: bool = False) -> tuple[str, str] | None:
        """(message, SQLSTATE) when the target refuses ``node``."""
        return None

    def text_refusal(self, sql: str) -> tuple[str, str] | None:
        """(message, SQLSTATE) when the target refuses a statement's text before parsing it (its size)."""
        return None

    def rewrite_error(self, fields: dict[str, str]) -> dict[str, str]:
        # A refusal raised by standin.refuse() carries no PL/pgSQL context.
        # What the stand-in's own functions add (their PL/pgSQL context, internal queries) is not the target's.
        where = fields.get("W", "")
        if "standin." in where or any(f"function {name}(" in where for name in STANDIN_FUNCTIONS):
            fields = {code: value for code, value in fields.items() if code not in "WRLFqP"}
        return fields

    # ----------------------------------------------------------------- helpers

    def refuse(self, message: str, sqlstate: str) -> None:
        """Answer a simple-protocol statement with an error, through the backend so a block fails too."""
        self.session.forward_query(refusal_sql(message, sqlstate))


def refusal_sql(message: str, sqlstate: str, *, parameters: int = 0) -> str:
    """A statement that fails with ``message``; it takes (and ignores) ``parameters`` bind parameters."""
    call = f"SELECT standin.refuse({literal(message)}, {literal(sqlstate)})"
    if parameters:
        call += " FROM (SELECT " + ", ".join(f"${i}::text" for i in range(1, parameters + 1)) + ") AS p"
    return call


REFUSE_FUNCTION = """
CREATE SCHEMA IF NOT EXISTS standin;
CREATE OR REPLACE FUNCTION standin.refuse(message text, sqlstate text) RETURNS void
LANGUAGE plpgsql AS $$ BEGIN RAISE EXCEPTION USING MESSAGE = message, ERRCODE = sqlstate; END $$;
"""
