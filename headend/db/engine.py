"""The database engines: SQLite (a file path, the default, through sqlite3 and sqlite-utils)
or PostgreSQL (a ``postgresql://`` URL, through psycopg 3).

``open_database(target)`` decides by the prefix and returns ``(conn, db)``: for SQLite a
``sqlite3.Connection`` and a sqlite-utils ``Database``; for PostgreSQL a ``PgConnection`` and a
``PgDatabase`` offering what the feature stores use of those two:

- ``conn.execute(sql, params)`` / ``conn.executemany(sql, rows)`` returning a cursor with
  ``fetchone``, ``fetchall``, iteration (tuples, as sqlite3 gives), ``rowcount``;
  ``with conn:`` commits (rolls back on an error) as sqlite3's does; explicit ``BEGIN`` /
  ``COMMIT`` statements work (``BEGIN IMMEDIATE`` is a plain ``BEGIN``);
- ``db.atomic()`` (a transaction, a savepoint when nested), ``db.query(sql, params)`` (dicts),
  ``db.execute``, ``db[table].insert(row)`` and the table-creation calls the migrations make
  (``create``, ``create_index``, ``add_column``), giving the same columns, types, keys,
  defaults and index names sqlite-utils gives.

The stores' SQL is written once with ``?`` placeholders: ``translate`` turns them into
psycopg's ``%s`` in one place (a ``?`` inside a string literal, a quoted identifier or a
comment is left alone; a literal ``%`` is doubled), and ``[name]`` identifiers into
``"name"``. Where the dialects really differ (``INSERT OR REPLACE``, ``max(a, b)``, ``GLOB``,
``rowid``, PRAGMAs, date functions) a store keeps both variants side by side and picks by
``dialect(conn)`` ("sqlite" or "postgresql").

PostgreSQL errors come out as the sqlite3 exception family (``PgIntegrityError`` is a
``sqlite3.IntegrityError``, and so on), with the psycopg error as their cause, so the stores'
``except sqlite3.IntegrityError`` and the CLI's one handler (``sqlite3.Error``) serve both
engines. Unlike SQLite, a failed statement inside a PostgreSQL transaction aborts the whole
transaction: ``atomic()`` rolls back to its savepoint.
"""

from __future__ import annotations

import contextlib
import functools
import re
import secrets
import sqlite3
from collections.abc import Iterable, Mapping, Sequence

PG_PREFIXES = ("postgresql://", "postgres://")


def is_postgres(target) -> bool:
    return isinstance(target, str) and target.startswith(PG_PREFIXES)


def dialect(conn_or_db) -> str:
    """ "postgresql" for a PgConnection / PgDatabase, else "sqlite"."""
    return getattr(conn_or_db, "dialect", "sqlite")


def redact(url: str) -> str:
    """A URL with its password replaced by ***, for messages."""
    return re.sub(r"(://[^:/@]*:)[^@]*@", r"\1***@", str(url))


class NotOnPostgres(sqlite3.NotSupportedError):
    """A command or query that has no PostgreSQL variant yet."""


def not_yet(what: str) -> NotOnPostgres:
    return NotOnPostgres("%s: not yet on PostgreSQL (works on a SQLite database)" % what)


# ------------------------------------------------------------------ placeholders


@functools.lru_cache(maxsize=2048)
def translate(sql: str) -> str:
    """SQLite-flavoured SQL with ``?`` placeholders -> psycopg's ``%s`` form."""
    out: list[str] = []
    i, n = 0, len(sql)
    while i < n:
        c = sql[i]
        if c == "'" or c == '"':  # a literal or a quoted identifier: copied, % doubled
            j = i + 1
            while j < n:
                if sql[j] == c:
                    if j + 1 < n and sql[j + 1] == c:  # '' inside a literal
                        j += 2
                        continue
                    break
                j += 1
            out.append(sql[i : j + 1].replace("%", "%%"))
            i = j + 1
        elif c == "-" and sql.startswith("--", i):
            j = sql.find("\n", i)
            j = n if j < 0 else j
            out.append(sql[i:j].replace("%", "%%"))
            i = j
        elif c == "[":  # SQLite's [identifier] quoting
            j = sql.find("]", i)
            if j > i and re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", sql[i + 1 : j]):
                out.append('"%s"' % sql[i + 1 : j])
                i = j + 1
            else:
                out.append(c)
                i += 1
        elif c in "uU" and sql[i : i + 4].lower() == "user" and _bare_word(sql, i, 4):
            out.append('"user"')  # a column named user: a reserved word on PostgreSQL
            i += 4
        elif c == "?":
            out.append("%s")
            i += 1
        elif c == "%":
            out.append("%%")
            i += 1
        else:
            out.append(c)
            i += 1
    text = "".join(out)
    if re.match(r"\s*BEGIN\s+(IMMEDIATE|EXCLUSIVE|DEFERRED)\b", text, re.I):
        text = "BEGIN"
    return text


def _bare_word(sql: str, i: int, n: int) -> bool:
    before = sql[i - 1] if i else " "
    after = sql[i + n] if i + n < len(sql) else " "
    return not (before.isalnum() or before in "_.$") and not (after.isalnum() or after in "_(")


def insert_id(conn, sql: str, params: Sequence, pk: str = "id") -> int:
    """Run an INSERT; the new row's integer primary key (sqlite3's ``lastrowid``, PostgreSQL's
    ``RETURNING``)."""
    if dialect(conn) == "postgresql":
        return conn.insert_id(sql, params, pk)
    return conn.execute(sql, params).lastrowid


# ------------------------------------------------------------------ COPY's text format

_COPY_ESCAPES = str.maketrans({"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"})


def copy_text_data(rows: Sequence[Sequence], width: int) -> str:
    """``rows`` (each ``width`` values: str, int, float or None) in COPY's text format: values
    by ``str()``, None as ``\\N``, one line a row. The batch is joined at once, then checked: a
    value holding a backslash, tab or line break (its tabs, lines or backslashes counted beyond
    the rows' own) has the batch escaped value by value (COPY would read it otherwise)."""
    text = "\n".join(["\t".join(["\\N" if v is None else str(v) for v in r]) for r in rows]) + "\n"
    n = len(rows)
    if (
        text.count("\\") != sum(r.count(None) for r in rows)
        or text.count("\t") != (width - 1) * n
        or text.count("\n") != n
        or "\r" in text
    ):
        text = "".join(
            "\t".join(["\\N" if v is None else str(v).translate(_COPY_ESCAPES) for v in r]) + "\n"
            for r in rows
        )
    return text


# ------------------------------------------------------------------ errors


class PgIntegrityError(sqlite3.IntegrityError):
    pass


class PgOperationalError(sqlite3.OperationalError):
    pass


class PgDatabaseError(sqlite3.DatabaseError):
    pass


def _mapped(e: Exception) -> sqlite3.Error:
    import psycopg

    if isinstance(e, psycopg.IntegrityError):
        cls = PgIntegrityError
    elif isinstance(e, psycopg.OperationalError):
        cls = PgOperationalError
    else:
        cls = PgDatabaseError
    err = cls(str(e).strip())
    err.sqlstate = getattr(e, "sqlstate", None)
    return err


# ------------------------------------------------------------------ connection


class PgCursor:
    """What the stores use of a sqlite3 cursor."""

    __slots__ = ("_cur", "rowcount", "lastrowid")

    def __init__(self, cur, rowcount: int | None = None, lastrowid=None) -> None:
        self._cur = cur
        self.rowcount = cur.rowcount if rowcount is None else rowcount
        self.lastrowid = lastrowid

    def fetchone(self):
        return self._cur.fetchone() if self._cur.description is not None else None

    def fetchall(self):
        return self._cur.fetchall() if self._cur.description is not None else []

    def __iter__(self):
        return iter(self.fetchall())

    @property
    def description(self):
        return self._cur.description


class PgConnection:
    """A psycopg 3 connection dressed as the sqlite3 connection the stores use. It runs in
    autocommit mode: a statement outside a transaction commits by itself; ``atomic()``,
    ``with conn:`` and an explicit ``BEGIN`` open one."""

    dialect = "postgresql"

    def __init__(self, url: str, timeout: float = 30.0) -> None:
        import psycopg

        self.url = url
        try:
            self.raw = psycopg.connect(url, autocommit=True, connect_timeout=max(1, int(timeout)))
        except psycopg.Error as e:
            raise _mapped(e) from e

    @property
    def in_transaction(self) -> bool:
        from psycopg.pq import TransactionStatus

        return self.raw.info.transaction_status != TransactionStatus.IDLE

    def execute(self, sql: str, params: Sequence | Mapping = ()) -> PgCursor:
        import psycopg

        try:
            cur = self.raw.execute(
                translate(sql), tuple(params) if not isinstance(params, Mapping) else params
            )
        except psycopg.Error as e:
            raise _mapped(e) from e
        return PgCursor(cur)

    def executemany(self, sql: str, rows: Iterable[Sequence]) -> PgCursor:
        import psycopg

        rows = [tuple(r) for r in rows]
        cur = self.raw.cursor()
        if not rows:
            return PgCursor(cur, rowcount=0)
        try:
            cur.executemany(translate(sql), rows)
        except psycopg.Error as e:
            raise _mapped(e) from e
        return PgCursor(cur)

    def copy_rows(self, sql: str, rows: Iterable[Sequence]) -> None:
        """``COPY ... FROM STDIN`` (binary-safe) with ``rows``."""
        import psycopg

        try:
            with self.raw.cursor().copy(sql) as copy:
                for r in rows:
                    copy.write_row(r)
        except psycopg.Error as e:
            raise _mapped(e) from e

    def copy_text(self, sql: str, rows: Sequence[Sequence], width: int) -> None:
        """``COPY ... FROM STDIN`` in text format with ``rows`` of ``width`` values (``copy_text_data``):
        a batch formatted at once instead of ``copy_rows``' Python call per value."""
        import psycopg

        try:
            with self.raw.cursor().copy(sql) as copy:
                copy.write(copy_text_data(rows, width))
        except psycopg.Error as e:
            raise _mapped(e) from e

    def insert_id(self, sql: str, params: Sequence, pk: str = "id") -> int:
        """An INSERT's new primary key (sqlite3's ``lastrowid``)."""
        return self.execute(sql + " RETURNING " + pk, params).fetchone()[0]

    def commit(self) -> None:
        if self.in_transaction:
            self.execute("COMMIT")

    def rollback(self) -> None:
        if self.in_transaction:
            self.execute("ROLLBACK")

    def __enter__(self) -> PgConnection:
        if not self.in_transaction:
            self.execute("BEGIN")
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.commit()
        else:
            self.rollback()

    def close(self) -> None:
        self.raw.close()


# ------------------------------------------------------------------ the sqlite-utils subset

_TYPES = {str: "TEXT", int: "BIGINT", float: "DOUBLE PRECISION", bytes: "BYTEA", bool: "BIGINT"}


def _q(name: str) -> str:
    return '"%s"' % name.replace('"', '""')


def _literal(value) -> str:
    if isinstance(value, bool | int | float):
        return repr(int(value) if isinstance(value, bool) else value)
    return "'%s'" % str(value).replace("'", "''")


class PgTable:
    """``db[name]``: the table calls the stores and migrations make."""

    def __init__(self, db: PgDatabase, name: str) -> None:
        self.db, self.name = db, name

    def exists(self) -> bool:
        return self.db.conn.execute("SELECT to_regclass(?)", [self.name]).fetchone()[0] is not None

    def create_sql(
        self,
        columns: Mapping[str, type],
        pk=None,
        not_null: Iterable[str] = (),
        defaults: Mapping | None = None,
        foreign_keys: Sequence = (),
        partition_by: str | None = None,
    ) -> str:
        """The CREATE TABLE sqlite-utils' ``create`` makes, in PostgreSQL's words: a single
        integer primary key is an identity column (SQLite's rowid alias), ``partition_by``
        (a column) makes a table range-partitioned on it, whose primary key then includes it."""
        not_null, defaults = set(not_null), dict(defaults or {})
        pks = [pk] if isinstance(pk, str) else list(pk or [])
        if partition_by and pks and partition_by not in pks:
            pks.append(partition_by)
        lines = []
        for col, typ in columns.items():
            line = "%s %s" % (_q(col), _TYPES[typ])
            if pks == [col] and typ is int and not partition_by:
                line += " GENERATED BY DEFAULT AS IDENTITY"
            if col in not_null:
                line += " NOT NULL"
            if col in defaults:
                line += " DEFAULT " + _literal(defaults[col])
            lines.append(line)
        if pks:
            lines.append("PRIMARY KEY (%s)" % ", ".join(_q(c) for c in pks))
        for col, other, other_col in foreign_keys:
            lines.append("FOREIGN KEY (%s) REFERENCES %s (%s)" % (_q(col), _q(other), _q(other_col)))
        sql = "CREATE TABLE %s (\n   %s\n)" % (_q(self.name), ",\n   ".join(lines))
        if partition_by:
            sql += " PARTITION BY RANGE (%s)" % _q(partition_by)
        return sql

    def create(self, columns, pk=None, not_null=(), defaults=None, foreign_keys=(), **kw) -> PgTable:
        self.db.conn.execute(self.create_sql(columns, pk, not_null, defaults, foreign_keys, **kw))
        return self

    def create_index(self, columns: Sequence[str], unique: bool = False, index_name: str | None = None):
        name = index_name or "idx_%s_%s" % (self.name.replace(" ", "_"), "_".join(columns))
        self.db.conn.execute(
            "CREATE %sINDEX %s ON %s (%s)"
            % ("UNIQUE " if unique else "", _q(name), _q(self.name), ", ".join(_q(c) for c in columns))
        )
        return self

    def add_column(self, name: str, typ: type) -> PgTable:
        self.db.conn.execute("ALTER TABLE %s ADD COLUMN %s %s" % (_q(self.name), _q(name), _TYPES[typ]))
        return self

    def insert(self, row: Mapping) -> PgTable:
        cols = list(row)
        self.db.conn.execute(
            "INSERT INTO %s (%s) VALUES (%s)"
            % (_q(self.name), ", ".join(_q(c) for c in cols), ", ".join("?" * len(cols))),
            [row[c] for c in cols],
        )
        return self

    def count(self) -> int:
        return self.db.conn.execute("SELECT count(*) FROM %s" % _q(self.name)).fetchone()[0]


class PgDatabase:
    """What the stores and migrations use of a sqlite-utils ``Database``, over a PgConnection."""

    dialect = "postgresql"

    def __init__(self, conn: PgConnection) -> None:
        self.conn = conn

    def __getitem__(self, name: str) -> PgTable:
        return PgTable(self, name)

    def table_names(self) -> list[str]:
        return [
            r[0]
            for r in self.conn.execute(
                "SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
                " WHERE n.nspname = current_schema() AND c.relkind IN ('r', 'p') AND NOT c.relispartition"
                " ORDER BY c.relname"
            )
        ]

    @contextlib.contextmanager
    def atomic(self):
        conn = self.conn
        if conn.in_transaction:
            sp = "sp_%s" % secrets.token_hex(8)
            conn.execute("SAVEPOINT " + sp)
            try:
                yield self
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK TO SAVEPOINT " + sp)
                    conn.execute("RELEASE SAVEPOINT " + sp)
                raise
            else:
                conn.execute("RELEASE SAVEPOINT " + sp)
        else:
            conn.execute("BEGIN")
            try:
                yield self
            except BaseException:
                conn.rollback()
                raise
            else:
                conn.commit()

    def execute(self, sql: str, params: Sequence = ()) -> PgCursor:
        return self.conn.execute(sql, params)

    def query(self, sql: str, params: Sequence | Mapping = ()):
        cur = self.conn.execute(sql, params)
        desc = cur.description
        if desc is None:
            raise ValueError("query() can only be used with SQL that returns rows")
        names = [d.name for d in desc]
        return (dict(zip(names, r, strict=True)) for r in cur.fetchall())

    def close(self) -> None:
        self.conn.close()


def open_database(target, timeout: float = 30.0):
    """(conn, db) for a SQLite path or a ``postgresql://`` URL (see the module doc)."""
    if is_postgres(target):
        conn = PgConnection(target, timeout=timeout)
        return conn, PgDatabase(conn)
    from sqlite_utils import Database

    conn = sqlite3.connect(str(target), timeout=timeout, check_same_thread=False)
    return conn, Database(conn)
