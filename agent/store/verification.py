"""The check after erasing a person: does any row, in any table, still name them?

Deliberately separate from the code that erases (``agent.store.erasure``): it knows no
table of memagent or langgraph by name. It reads the catalog for every text, JSON and
bytes column of every table the database holds, so a table added later, by memagent,
langgraph or anyone, is searched too, and a statement the erase forgot shows up here
as a hit rather than as a silent leftover.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from psycopg import AsyncConnection, sql
from psycopg.rows import DictRow
from psycopg.types.json import Jsonb

from agent.store import sql as statements

_TESTS = {
    "bytea": statements.SCAN_BYTES,
    "json": statements.SCAN_JSON,
    "jsonb": statements.SCAN_JSON,
}


@dataclass(frozen=True, slots=True)
class Scan:
    """What the scan looked at and what it found.

    Attributes:
        tables: How many tables were searched.
        columns: How many of their columns.
        found: Rows still naming the user or holding one of their thread ids, per
            table; only tables with such rows are listed.
    """

    tables: int
    columns: int
    found: dict[str, int] = field(default_factory=dict)

    @property
    def clean(self) -> bool:
        """Whether no row anywhere names what was erased."""
        return not self.found

    def to_json(self) -> dict[str, Any]:
        return {
            "tables": self.tables,
            "columns": self.columns,
            "found": dict(sorted(self.found.items())),
            "clean": self.clean,
        }


async def scan_for(conn: AsyncConnection[DictRow], user: str, thread_ids: Sequence[str]) -> Scan:
    """Searches every table for the user's name and their thread ids.

    A text column matches when its value is the name or one of the ids; a JSON
    column when its text holds an id or one of its strings is the name; a bytes
    column (msgpack keeps text as UTF-8) when it holds an id's bytes. The name is not
    looked for inside free text, where another user may have mentioned it.
    """
    ids = list(thread_ids)
    params = {
        "exact": [user, *ids],
        "ids": ids,
        "raw_ids": [thread_id.encode() for thread_id in ids],
        "name": Jsonb({"name": user}),
    }
    columns: dict[tuple[str, str], list[sql.Composable]] = {}
    cur = await conn.execute(statements.SELECT_SCANNABLE_COLUMNS)
    for row in await cur.fetchall():
        test = _TESTS.get(row["data_type"], statements.SCAN_TEXT)
        columns.setdefault((row["table_schema"], row["table_name"]), []).append(
            sql.SQL("(" + test + ")").format(column=sql.Identifier(row["column_name"]))
        )
    found: dict[str, int] = {}
    for (schema, table), tests in columns.items():
        query = sql.SQL(statements.SCAN_TABLE).format(
            table=sql.Identifier(schema, table), tests=sql.SQL(" OR ").join(tests)
        )
        hits = await (await conn.execute(query, params)).fetchone()
        if hits is not None and hits["hits"]:
            found[table if schema == "public" else f"{schema}.{table}"] = hits["hits"]
    return Scan(len(columns), sum(len(tests) for tests in columns.values()), found)
