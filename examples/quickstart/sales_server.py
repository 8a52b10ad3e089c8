"""An MCP server over a small sales database: CSV files loaded into SQLite, queried read-only with SQL.

Run alone with `python sales_server.py [DATA_DIR]` (stdio) or `--http PORT`; the quick-start task uses it.
"""

from __future__ import annotations

import argparse
import csv
import sqlite3
from pathlib import Path
from typing import Annotated

from mcp.server import MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from mcp.types import ToolAnnotations
from pydantic import Field

MAX_ROWS = 200
READ_ONLY = ToolAnnotations(read_only_hint=True, idempotent_hint=True, open_world_hint=False)


def load_database(data_dir: Path) -> sqlite3.Connection:
    """One table per CSV file; numeric-looking columns get numeric types."""
    db = sqlite3.connect(":memory:", check_same_thread=False)
    for path in sorted(data_dir.glob("*.csv")):
        with path.open(newline="", encoding="utf-8") as handle:
            rows = list(csv.reader(handle))
        header, body = rows[0], rows[1:]
        types = [_column_type([row[i] for row in body]) for i in range(len(header))]
        columns = ", ".join(f'"{name}" {kind}' for name, kind in zip(header, types, strict=True))
        db.execute(f'CREATE TABLE "{path.stem}" ({columns})')
        db.executemany(f'INSERT INTO "{path.stem}" VALUES ({", ".join("?" * len(header))})', body)
    db.execute("PRAGMA query_only = ON")  # the model may read, never change, the data
    return db


def _column_type(values: list[str]) -> str:
    for kind, convert in (("INTEGER", int), ("REAL", float)):
        try:
            for value in values:
                convert(value)
            return kind
        except ValueError:
            continue
    return "TEXT"


def build_server(data_dir: Path) -> MCPServer:
    db = load_database(data_dir)
    server = MCPServer("sales", instructions="Read-only SQL over the sales tables (SQLite dialect).")

    @server.tool(annotations=READ_ONLY)
    def list_tables() -> str:
        """List the tables with their columns and row counts."""
        lines = []
        for (name,) in db.execute("SELECT name FROM sqlite_master WHERE type='table' ORDER BY name"):
            columns = ", ".join(f"{c[1]} {c[2]}" for c in db.execute(f'PRAGMA table_info("{name}")'))
            count = db.execute(f'SELECT COUNT(*) FROM "{name}"').fetchone()[0]
            lines.append(f"{name} ({count} rows): {columns}")
        return "\n".join(lines)

    @server.tool(annotations=READ_ONLY)
    def query(
        sql: Annotated[str, Field(description="One SELECT statement in SQLite syntax")],
    ) -> str:
        """Run a read-only SQL query and return the rows as a tab-separated table (at most 200 rows)."""
        try:
            cursor = db.execute(sql)
        except sqlite3.Error as exc:
            raise ToolError(f"SQL error: {exc}") from None
        header = [d[0] for d in cursor.description or ()]
        rows = cursor.fetchmany(MAX_ROWS + 1)
        more = len(rows) > MAX_ROWS
        lines = ["\t".join(header), *("\t".join(str(v) for v in row) for row in rows[:MAX_ROWS])]
        if more:
            lines.append(f"... more than {MAX_ROWS} rows; add a LIMIT or aggregate")
        return "\n".join(lines)

    return server


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("data_dir", nargs="?", type=Path, default=Path(__file__).parent)
    parser.add_argument("--http", type=int, metavar="PORT", help="serve streamable HTTP on 127.0.0.1:PORT")
    args = parser.parse_args()
    server = build_server(args.data_dir)
    if args.http:
        server.run(transport="streamable-http", host="127.0.0.1", port=args.http)
    else:
        server.run()


if __name__ == "__main__":
    main()
