"""A small curated table of imports that syntax cannot see (design notes §2, hard case 19).

`pd.read_parquet(...)` imports pyarrow inside pandas, `create_engine("postgresql://...")` loads
psycopg2 by name, `fsspec.open("s3://...")` needs s3fs. No analyzer can find these from the
caller's source, so a short, explicit table turns the commonest ones into optional import sites
with a human-readable `hint` — better than silence, and visibly a guess.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class HintSite:
    """One import the table infers from a call: provider module + why."""

    module: str
    hint: str


_PANDAS_IO: dict[str, tuple[str, str]] = {
    "parquet": ("pyarrow", "pandas reads/writes parquet through pyarrow (or fastparquet)"),
    "feather": ("pyarrow", "pandas reads/writes feather through pyarrow"),
    "orc": ("pyarrow", "pandas reads/writes ORC through pyarrow"),
    "excel": ("openpyxl", "pandas reads/writes .xlsx through openpyxl"),
    "hdf": ("tables", "pandas reads/writes HDF5 through PyTables"),
    "xml": ("lxml", "pandas reads/writes XML through lxml"),
    "html": ("lxml", "pandas.read_html parses through lxml (or bs4 + html5lib)"),
}

# Module-level functions, by qualified name.
FUNCTIONS: dict[str, HintSite] = {
    f"pandas.read_{fmt}": HintSite(mod, why) for fmt, (mod, why) in _PANDAS_IO.items()
}
# Methods, by attribute name, whatever the receiver (df.to_parquet(...)).
METHODS: dict[str, HintSite] = {
    f"to_{fmt}": HintSite(mod, why)
    for fmt, (mod, why) in _PANDAS_IO.items()
    if fmt not in ("html",)
}

_SQLA_DRIVERS = {
    "psycopg2": "psycopg2",
    "psycopg": "psycopg",
    "asyncpg": "asyncpg",
    "pg8000": "pg8000",
    "pymysql": "pymysql",
    "mysqldb": "MySQLdb",
    "mysqlconnector": "mysql.connector",
    "aiomysql": "aiomysql",
    "asyncmy": "asyncmy",
    "pyodbc": "pyodbc",
    "cx_oracle": "cx_Oracle",
    "oracledb": "oracledb",
    "aiosqlite": "aiosqlite",
}
_SQLA_DEFAULTS = {
    "postgresql": "psycopg2",
    "postgres": "psycopg2",
    "mysql": "MySQLdb",
    "mariadb": "MySQLdb",
    "oracle": "cx_Oracle",
    "mssql": "pyodbc",
}
_SQLA_ENGINES = frozenset(
    {"sqlalchemy.create_engine", "sqlalchemy.ext.asyncio.create_async_engine"}
)

_FSSPEC_PROTOCOLS = {
    "s3": "s3fs",
    "s3a": "s3fs",
    "gs": "gcsfs",
    "gcs": "gcsfs",
    "az": "adlfs",
    "abfs": "adlfs",
    "abfss": "adlfs",
    "hf": "huggingface_hub",
    "http": "aiohttp",
    "https": "aiohttp",
    "sftp": "paramiko",
    "ssh": "paramiko",
    "hdfs": "pyarrow",
}
_FSSPEC_CALLS = frozenset(
    {"fsspec.open", "fsspec.open_files", "fsspec.filesystem", "fsspec.core.url_to_fs"}
)

_MPL_BACKENDS = {
    "qt5agg": "PyQt5",
    "qtagg": "PyQt6",
    "tkagg": "tkinter",
    "gtk3agg": "gi",
    "gtk4agg": "gi",
    "wxagg": "wx",
    "webagg": "tornado",
    "cairo": "cairo",
}


def _protocol(url: str) -> str | None:
    if "://" not in url:
        return None
    return url.split("://", 1)[0].lower()


def hints_for_call(
    qualnames: frozenset[str], method: str | None, arg: str | None
) -> list[HintSite]:
    """Hints for one call: its possible qualified names, the attribute called, the first literal."""
    out: list[HintSite] = []
    for q in qualnames:
        if q in FUNCTIONS:
            out.append(FUNCTIONS[q])
        if q in _SQLA_ENGINES and arg is not None:
            scheme = _protocol(arg) or ""
            dialect, _, driver = scheme.partition("+")
            module = _SQLA_DRIVERS.get(driver) if driver else _SQLA_DEFAULTS.get(dialect)
            if module is not None:
                out.append(HintSite(module, f"SQLAlchemy loads the {scheme!r} driver by name"))
        if (q in _FSSPEC_CALLS or q.startswith("pandas.read_")) and arg is not None:
            proto = arg.lower() if q == "fsspec.filesystem" else _protocol(arg)
            if proto in _FSSPEC_PROTOCOLS:
                out.append(
                    HintSite(
                        _FSSPEC_PROTOCOLS[proto],
                        f"fsspec loads the {proto!r} protocol implementation by name",
                    )
                )
        if q == "matplotlib.use" and arg is not None and arg.lower() in _MPL_BACKENDS:
            out.append(
                HintSite(_MPL_BACKENDS[arg.lower()], f"matplotlib backend {arg!r} imports it")
            )
    if not out and method is not None and method in METHODS:
        out.append(METHODS[method])
    return out
