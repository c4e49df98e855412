"""The reduction run where the data is: Athena (Trino) or Spark instead of the local DuckDB scan.

There is one definition of the heavy step, `reduction.reduce_sql`, written in DuckDB's SQL. sqlglot
transpiles it for the other engines: ``x & 18`` becomes ``BITWISE_AND(x, 18)`` and ``BIT_OR`` becomes
``BITWISE_OR_AGG`` on Athena, the column ``"end"`` is quoted with backticks on Spark; ``COUNT(CASE …)``, ``%`` and
``coalesce`` are the same everywhere. Only the reduced rows come back; the inventory, the matching and
everything after run locally on them, unchanged (`analysis.analyze` with ``engine=``).

The records each engine reduces are selected by `records_sql` (also DuckDB SQL, transpiled with the
rest): the columns of `fields.USED` under their underscore names, cast to portable types (DuckDB's
unsigned types do not exist elsewhere), NULL where the table lacks the field.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import pandas as pd
import sqlglot

from . import fields, records, reduction
from .errors import SgauditError

#: The engines `analysis.analyze` accepts.
ENGINES = ("duckdb", "athena", "spark")

#: sqlglot's names of the engines' dialects.
_DIALECTS = {"athena": "athena", "spark": "spark"}

#: sgaudit's DuckDB types → types every engine has. Ports fit INTEGER, protocol numbers SMALLINT.
_PORTABLE = {"VARCHAR": "VARCHAR", "USMALLINT": "INTEGER", "UTINYINT": "SMALLINT", "SMALLINT": "SMALLINT",
             "BIGINT": "BIGINT"}

#: sgaudit's DuckDB types → Hive DDL types of an Athena text table. Text fields that do not parse as the
#: type (``-``) read as NULL, as they do in the local reader.
_HIVE = {"VARCHAR": "string", "USMALLINT": "int", "UTINYINT": "int", "SMALLINT": "int", "BIGINT": "bigint"}


class EngineError(SgauditError):
    """An engine that cannot be used as asked (unknown engine, missing option)."""


class AthenaQueryError(SgauditError):
    """An Athena query that ended FAILED or CANCELLED, or did not end in time."""


def records_sql(source: str, available: Iterable[str] | None = None,
                source_file: str | None = None) -> str:
    """A subquery over ``source`` with the typed `fields.USED` columns, in DuckDB SQL (to be transpiled).

    Parameters
    ----------
    source : str
        A table name (or subquery) whose columns carry the underscore names (``tcp_flags``).
    available : iterable of str, optional
        AWS names of the fields ``source`` has; the others are NULL. Default: all of `fields.USED`.
    source_file : str, optional
        An expression for the file a record came from (``"$path"`` on Athena); default NULL, or the
        ``source_file`` column when ``available`` names it.
    """
    have = set(fields.USED if available is None else available)
    cols = []
    for name in fields.USED:
        fld = fields.BY_NAME[name]
        typ = _PORTABLE[fld.sql_type]
        expr = f'CAST("{fld.column}" AS {typ})' if name in have else f"CAST(NULL AS {typ})"
        cols.append(f'{expr} AS "{fld.column}"')
    if source_file is None:
        source_file = '"source_file"' if "source_file" in have else "NULL"
    cols.append(f"CAST({source_file} AS VARCHAR) AS source_file")
    return f"(SELECT {', '.join(cols)} FROM {source})"


def reduction_sql(dialect: str, table: str, lo_ms: int, hi_ms: int, *, available: Iterable[str] | None = None,
                  source_file: str | None = None, slot_ms: int | None = None) -> str:
    """`reduction.reduce_sql` over ``table``, transpiled from DuckDB's SQL to ``dialect``.

    Parameters
    ----------
    dialect : str
        ``"athena"`` (Trino) or ``"spark"``; ``"duckdb"`` returns the statement as written.
    table : str
        A table with the underscore columns of `fields.USED` (see `records_sql`), as the engine names it.
    lo_ms, hi_ms : int
        The window ``[lo, hi)`` in Unix milliseconds.
    available, source_file
        Passed to `records_sql`.
    slot_ms : int, optional
        Split the rows by time as well (`reduction.reduce_sql`).

    Returns
    -------
    str
        One SELECT statement in the engine's SQL.
    """
    sql = reduction.reduce_sql(records_sql(table, available, source_file), lo_ms, hi_ms, slot_ms)
    if dialect == "duckdb":
        return sql
    if dialect not in _DIALECTS:
        raise EngineError(f"unknown engine {dialect!r}; use one of {', '.join(ENGINES)}")
    # unsupported_level=RAISE: a construct sqlglot cannot express in the target fails here, not as a
    # wrong answer on the cluster.
    return sqlglot.transpile(sql, read="duckdb", write=_DIALECTS[dialect],
                             unsupported_level=sqlglot.ErrorLevel.RAISE)[0]


# --- Athena -------------------------------------------------------------------------------------------


def athena_table_ddl(database: str, table: str, s3_location: str,
                     fields_: Iterable[str] = fields.DEFAULT_FORMAT, partitioning: str = "day",
                     start_date: str = "2020/01/01") -> str:
    """CREATE EXTERNAL TABLE for flow-log text files in S3's layout, with partition projection.

    As AWS documents for flow logs in Athena: space-delimited text, the header line skipped, one column
    per field of the log format in its order, and partitions projected from the S3 path (no crawler, no
    ``MSCK REPAIR``): ``…/AWSLogs/{account}/vpcflowlogs/{region}/yyyy/MM/dd/`` and, for flow logs
    delivered with hourly partitions, ``…/HH/``.

    Parameters
    ----------
    database, table : str
        Where the table goes.
    s3_location : str
        ``s3://bucket/prefix/AWSLogs/{account}/vpcflowlogs/{region}/`` (the folder above the dates).
    fields_ : iterable of str
        AWS field names in the order of the log format (default: the version-2 default format).
    partitioning : str
        ``"day"`` (partition ``day``, ``yyyy/MM/dd``) or ``"hour"`` (``day`` and ``hour``, ``HH``).
    start_date : str
        The first day projected, ``yyyy/MM/dd``.

    Returns
    -------
    str
        The DDL statement (Hive DDL, as Athena takes it).
    """
    if partitioning not in ("day", "hour"):
        raise EngineError(f"partitioning {partitioning!r}: use 'day' or 'hour'")
    names = list(fields_)
    unknown = [n for n in names if n not in fields.BY_NAME and n not in fields.BY_COLUMN]
    if unknown:
        raise EngineError(f"unknown flow-log field(s) {', '.join(unknown)} for the Athena table")
    flds = [fields.BY_NAME.get(n) or fields.BY_COLUMN[n] for n in names]
    location = s3_location if s3_location.endswith("/") else s3_location + "/"
    columns = ",\n  ".join(f"`{f.column}` {_HIVE[f.sql_type]}" for f in flds)
    parts = "`day` string" + (", `hour` string" if partitioning == "hour" else "")
    template = location + "${day}" + ("/${hour}" if partitioning == "hour" else "")
    props = {
        "skip.header.line.count": "1",
        # AWS writes '-' for a field without a value; NULL as in the local reader.
        "serialization.null.format": "-",
        "projection.enabled": "true",
        "projection.day.type": "date",
        "projection.day.format": "yyyy/MM/dd",
        "projection.day.range": f"{start_date},NOW",
        "projection.day.interval": "1",
        "projection.day.interval.unit": "DAYS",
    }
    if partitioning == "hour":
        props |= {"projection.hour.type": "integer", "projection.hour.range": "0,23",
                  "projection.hour.digits": "2"}
    props["storage.location.template"] = template
    tblprops = ",\n  ".join(f"'{k}'='{v}'" for k, v in props.items())
    return (f"CREATE EXTERNAL TABLE IF NOT EXISTS `{database}`.`{table}` (\n  {columns}\n)\n"
            f"PARTITIONED BY ({parts})\n"
            "ROW FORMAT DELIMITED FIELDS TERMINATED BY ' '\n"
            f"LOCATION '{location}'\n"
            f"TBLPROPERTIES (\n  {tblprops}\n)")


#: Athena's result types → how a value's text becomes a Python value, and the pandas dtype of the column.
_ATHENA_TYPES: dict[str, tuple[Callable[[str], Any], str]] = {
    **{t: (int, "Int64") for t in ("tinyint", "smallint", "integer", "int", "bigint")},
    "boolean": (lambda v: v.lower() == "true", "boolean"),
    **{t: (float, "Float64") for t in ("double", "float", "real")},
}


def run_athena(session, sql: str, database: str, workgroup: str | None = None,
               output_location: str | None = None, endpoint_url: str | None = None, *,
               poll: float = 1.0, timeout: float = 3600.0, catalog: str = "AwsDataCatalog") -> pd.DataFrame:
    """Run one query on Athena, wait for it, and return its rows typed.

    Parameters
    ----------
    session : boto3.Session
        Credentials and region.
    sql : str
        The statement, in Athena's SQL.
    database : str
        The Glue database the statement's unqualified names refer to.
    workgroup : str, optional
        Athena workgroup (default: the account's ``primary``).
    output_location : str, optional
        ``s3://…/`` for the result files; required unless the workgroup sets one.
    endpoint_url : str, optional
        Another endpoint (a local AWS in the tests).
    poll : float
        Seconds between status checks.
    timeout : float
        Seconds to wait before the query is stopped and `AthenaQueryError` raised.
    catalog : str
        The data catalog.

    Returns
    -------
    pandas.DataFrame
        The result's columns, integers as nullable ``Int64``, booleans as ``boolean``, text as ``object``.

    Raises
    ------
    AthenaQueryError
        The query ended FAILED or CANCELLED (with Athena's reason), or ran past ``timeout``.
    """
    client = session.client("athena", endpoint_url=endpoint_url)
    args: dict[str, Any] = {"QueryString": sql,
                            "QueryExecutionContext": {"Database": database, "Catalog": catalog}}
    if workgroup:
        args["WorkGroup"] = workgroup
    if output_location:
        args["ResultConfiguration"] = {"OutputLocation": output_location}
    qid = client.start_query_execution(**args)["QueryExecutionId"]
    deadline = time.monotonic() + timeout
    while True:
        status = client.get_query_execution(QueryExecutionId=qid)["QueryExecution"]["Status"]
        state = status["State"]
        if state == "SUCCEEDED":
            break
        if state in ("FAILED", "CANCELLED"):
            reason = status.get("StateChangeReason") or status.get("AthenaError", {}).get("ErrorMessage") or "?"
            raise AthenaQueryError(f"Athena query {qid} in database {database!r} ended {state}: {reason}")
        if time.monotonic() > deadline:
            client.stop_query_execution(QueryExecutionId=qid)
            raise AthenaQueryError(f"Athena query {qid} still {state} after {timeout:.0f} s; stopped it. "
                                   "Narrow --start/--end or raise the timeout.")
        time.sleep(poll)
    return _athena_rows(client, qid)


def _athena_rows(client, qid: str) -> pd.DataFrame:
    """Every page of a finished query's results as one typed DataFrame."""
    names: list[str] = []
    types: list[str] = []
    rows: list[list[str | None]] = []
    token = None
    first = True
    while True:
        page = client.get_query_results(QueryExecutionId=qid, **({"NextToken": token} if token else {}))
        result = page["ResultSet"]
        data = [[c.get("VarCharValue") for c in r.get("Data", [])] for r in result.get("Rows", [])]
        if first:
            info = result.get("ResultSetMetadata", {}).get("ColumnInfo", [])
            names = [c["Name"] for c in info]
            types = [c.get("Type", "varchar").lower() for c in info]
            # A SELECT's first page starts with the column names as a row.
            if data and data[0] == names:
                data = data[1:]
            first = False
        rows += data
        token = page.get("NextToken")
        if not token:
            break
    df = pd.DataFrame(rows, columns=names, dtype=object)
    for name, typ in zip(names, types, strict=True):
        conv, dtype = _ATHENA_TYPES.get(typ, (str, "object"))
        df[name] = pd.Series([None if v is None else conv(v) for v in df[name]], dtype=dtype, index=df.index)
    return df


def athena_table_layout(session, database: str, table: str, *,
                        endpoint_url: str | None = None) -> tuple[list[str], str | None]:
    """The flow-log fields an existing Athena table has, and its day partition, from the Glue Data Catalog.

    A table made for the version-2 format has no ``tcp_flags`` or ``flow_direction``; the reduction reads
    those as NULL there (the sides then come from the inventory), instead of failing on a missing column.

    Parameters
    ----------
    session : boto3.Session
        Credentials and region (``glue:GetTable``, already in `collect.athena_policy`).
    database, table : str
        The table.
    endpoint_url : str, optional
        Another endpoint (a local AWS in the tests).

    Returns
    -------
    (list of str, str or None)
        The AWS names of the fields of `fields.USED` that the table has; ``"day"`` when the table is
        partitioned by a ``day`` projected as ``yyyy/MM/dd`` (as `athena_table_ddl` makes it), else None.

    Raises
    ------
    EngineError
        The table does not exist, cannot be read, or lacks a field sgaudit cannot work without.
    """
    from botocore.exceptions import ClientError

    try:
        found = session.client("glue", endpoint_url=endpoint_url).get_table(DatabaseName=database, Name=table)
    except ClientError as exc:
        code = exc.response.get("Error", {}).get("Code", "?")
        if code == "EntityNotFoundException":
            raise EngineError(f"Athena table {database}.{table} is not in the Glue Data Catalog of this account "
                              "and region: check --athena-database, --athena-table and --athena-region, or "
                              "create it with engines.athena_table_ddl (docs/aws.md)") from None
        raise EngineError(f"cannot read the columns of Athena table {database}.{table} ({code}): sgaudit needs "
                          "glue:GetTable on it (docs/aws.md)") from None
    t = found["Table"]
    columns = {c["Name"].lower() for c in t.get("StorageDescriptor", {}).get("Columns", [])}
    have = [name for name in fields.USED if fields.BY_NAME[name].column in columns]
    missing = [fields.BY_NAME[name].column for name in fields.REQUIRED if name not in have]
    if missing:
        raise EngineError(f"Athena table {database}.{table} has no column {', '.join(missing)}; its columns are "
                          f"{', '.join(sorted(columns)) or 'none'}. A flow-log table needs every field of "
                          f"{' '.join(fields.REQUIRED)} (docs/aws.md)")
    partitions = {p["Name"].lower() for p in t.get("PartitionKeys", [])}
    projected = t.get("Parameters", {}).get("projection.day.format") == "yyyy/MM/dd"
    return have, ("day" if "day" in partitions and projected else None)


def reduce_on_athena(session, lo_ms: int, hi_ms: int, *, database: str, table: str,
                     workgroup: str | None = None, output_location: str | None = None,
                     endpoint_url: str | None = None, available: Iterable[str] | None = None,
                     create: dict | None = None, day_column: str | None = None,
                     poll: float = 1.0) -> pd.DataFrame:
    """The reduced rows of an Athena flow-log table, computed on Athena.

    ``create`` (``s3_location``, and optionally ``fields_``, ``partitioning``) makes the table first with
    `athena_table_ddl`; its ``fields_`` are then also the columns the table has, and its ``day``
    partition prunes the scan. ``"$path"``, Athena's hidden column, names the file of each malformed
    record.

    Otherwise, unless ``available`` names them, the table's columns and its ``day`` partition are read
    from the Glue Data Catalog (`athena_table_layout`).

    ``day_column`` (a ``yyyy/MM/dd`` string partition, ``day`` in tables made here) limits the files read
    to the window's days, one day wider on each side: a file sits in the folder of its delivery, which
    can be the day after its records start, and the window's edges are in UTC as the folders are. The
    records outside the window in those days are counted ``outside_window`` as locally, but records
    further out are not read, so that bucket is smaller than a local run's.
    """
    if create:
        run_athena(session, athena_table_ddl(database, table, **create), database, workgroup, output_location,
                   endpoint_url, poll=poll)
        if available is None:
            available = [(fields.BY_NAME.get(n) or fields.BY_COLUMN[n]).name
                         for n in create.get("fields_", fields.DEFAULT_FORMAT)]
        day_column = day_column or "day"
    elif available is None:
        available, found_day = athena_table_layout(session, database, table, endpoint_url=endpoint_url)
        day_column = day_column or found_day
    source, source_file = f'"{database}"."{table}"', '"$path"'
    bounded = lo_ms > -(2**62) or hi_ms < 2**62
    if day_column and bounded:
        # "$path" exists only on the table itself, so it is selected inside the pruning subquery.
        conds = []
        if lo_ms > -(2**62):
            conds.append(f'"{day_column}" >= {_day(lo_ms, -1)}')
        if hi_ms < 2**62:
            conds.append(f'"{day_column}" <= {_day(hi_ms, +1)}')
        source = f'(SELECT *, "$path" AS source_file FROM {source} WHERE {" AND ".join(conds)})'
        source_file = '"source_file"'
    sql = reduction_sql("athena", source, lo_ms, hi_ms, available=available, source_file=source_file)
    return run_athena(session, sql, database, workgroup, output_location, endpoint_url, poll=poll)


def _athena_errors(call: Callable[[], pd.DataFrame], options: dict) -> pd.DataFrame:
    """Run ``call``, turning botocore's failures into an `EngineError` that says what to do."""
    from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError, NoRegionError

    where = f"Athena table {options.get('database')}.{options.get('table')}"
    try:
        return call()
    except NoRegionError:
        raise EngineError(f"{where}: no AWS region is configured. Give --athena-region, set AWS_REGION, or pass a "
                          "--profile whose configuration has a region.") from None
    except NoCredentialsError:
        raise EngineError(f"{where}: no AWS credentials found. Use --profile, or set them up with aws configure "
                          "(or AWS_PROFILE).") from None
    except ClientError as exc:
        code = exc.response.get("Error", {}).get("Code", "?")
        raise EngineError(f"{where}: AWS refused {exc.operation_name} ({code}: "
                          f"{exc.response.get('Error', {}).get('Message', '')}); the identity needs the Athena "
                          "policy of docs/aws.md (collect.athena_policy)") from None
    except BotoCoreError as exc:  # the endpoint cannot be reached, a bad endpoint URL's answer, …
        raise EngineError(f"{where}: cannot reach AWS ({exc}); check the network, --athena-region and "
                          "--endpoint-url.") from None
    except ValueError as exc:
        if "endpoint" not in str(exc).lower():
            raise
        raise EngineError(f"--endpoint-url {options.get('endpoint_url')!r}: {exc}; give a URL such as "
                          "http://localhost:5000, or leave it out to call AWS itself.") from None


def _day(ms: int, shift: int) -> str:
    """The ``yyyy/MM/dd`` partition value of a time in ms, ``shift`` days later, as an SQL string."""
    day = pd.Timestamp(ms, unit="ms", tz="UTC").normalize() + pd.Timedelta(days=shift)
    return "'" + day.strftime("%Y/%m/%d") + "'"


# --- Spark --------------------------------------------------------------------------------------------


def _arrow_to_pandas(table) -> pd.DataFrame:
    """Arrow → pandas keeping NULL integers as integers (``Int64``), not floats."""
    import pyarrow as pa

    def mapper(t):
        if pa.types.is_integer(t):
            return pd.Int64Dtype()
        if pa.types.is_boolean(t):
            return pd.BooleanDtype()
        return None

    return table.to_pandas(types_mapper=mapper)


def run_spark(spark, records_df_or_path, lo_ms: int, hi_ms: int, *,
              available: Iterable[str] | None = None, slot_ms: int | None = None) -> pd.DataFrame:
    """The reduced rows of typed records, computed by Spark.

    Parameters
    ----------
    spark : pyspark.sql.SparkSession
        The session.
    records_df_or_path : pyspark.sql.DataFrame, str, Path or list of them
        The records with the underscore columns of `fields.USED` (and ``source_file``): a DataFrame, or
        Parquet files written by `records.scan_sql` (what `analyze` does).
    lo_ms, hi_ms : int
        The window ``[lo, hi)`` in Unix milliseconds.
    available : iterable of str, optional
        The fields the records have (default: the DataFrame's columns).
    slot_ms : int, optional
        Split the rows by time as well.

    Returns
    -------
    pandas.DataFrame
        The reduced rows, integers as nullable ``Int64``.
    """
    df = records_df_or_path
    if isinstance(df, (str, Path)):
        df = [df]
    if isinstance(df, list):
        df = spark.read.parquet(*[str(p) for p in df])
    if available is None:
        cols = set(df.columns)
        available = [n for n in fields.USED if fields.BY_NAME[n].column in cols]
        available += ["source_file"] if "source_file" in cols else []
    view = f"sgaudit_records_{uuid.uuid4().hex}"
    df.createOrReplaceTempView(view)
    try:
        out = spark.sql(reduction_sql("spark", view, lo_ms, hi_ms, available=available, slot_ms=slot_ms))
        return _arrow_to_pandas(out.toArrow())
    finally:
        spark.catalog.dropTempView(view)


def spark_session(master: str = "local[*]"):
    """A Spark session (the running one when there is one).

    Raises
    ------
    EngineError
        When pyspark is not installed: it is not among sgaudit's own dependencies.
    """
    try:
        from pyspark.sql import SparkSession
    except ImportError:
        raise EngineError("engine 'spark' needs pyspark and a Java runtime (17 or later), which sgaudit does not "
                          "install: pip install pyspark (into sgaudit's environment, e.g. .venv/bin/pip), or "
                          "give a running session as engine_options={'session': spark}") from None

    return (SparkSession.builder.master(master).appName("sgaudit")
            .config("spark.ui.enabled", "false").getOrCreate())


# --- analyze(engine=…) --------------------------------------------------------------------------------


def fill_reduced(con, rows: pd.DataFrame, lo: int | None, hi: int | None, table: str = "reduced") -> None:
    """Make ``table`` in DuckDB from an engine's reduced rows, with the local reduction's exact column types.

    The empty table comes from the local reduction itself, so the types cannot drift; the peer's IPv4
    number is added here, locally, as in `analysis._reduce`.
    """
    from .analysis import _reduce

    _reduce(con, [], Path("."), lo, hi, None, table=table)
    if rows.columns.empty:
        return
    con.register("_engine_rows", rows)
    try:
        con.execute(f"INSERT INTO {table} BY NAME SELECT *, ipv4_num(b_addr) AS b_num4 FROM _engine_rows")
    finally:
        con.unregister("_engine_rows")


def reduce_with_engine(engine: str, con, files, workdir: Path, lo: int | None, hi: int | None,
                       options: dict | None, progress=None) -> int:
    """Fill ``reduced`` with the rows ``engine`` computes; returns the number of statements (1).

    Spark: the local files are read once by DuckDB's own reader (`records.scan_sql`) into Parquet, which
    Spark then reduces. Reading the text with Spark's CSV reader would work too, but the local reader
    already handles every layout (headers, gzip, CloudWatch exports, Parquet) and keeps the lines it
    cannot type (`records.rejected_lines`), so the records and the problems are exactly the local ones.
    Athena: the table named in ``options`` is reduced where it is; the local files are not read.
    """
    options = dict(options or {})
    lo_ms = lo if lo is not None else -(2**62)
    hi_ms = hi if hi is not None else 2**62
    if engine == "spark":
        parquet = []
        for i, group in enumerate(records.group_files(files)):
            out = workdir / f"records-{i}.parquet"
            try:
                con.execute(f"COPY (SELECT * FROM {records.scan_sql(group, workdir)}) TO '{out}' (FORMAT parquet)")
            except Exception as exc:  # noqa: BLE001 - DuckDB's errors about the files become FlowLogReadError
                if records.is_read_error(exc, group):
                    records.raise_read_error(exc, group)
                raise
            parquet.append(out)
        if not parquet:
            fill_reduced(con, pd.DataFrame(), lo, hi)
            return 1
        spark = options.get("session") or spark_session(options.get("master", "local[*]"))
        rows = run_spark(spark, parquet, lo_ms, hi_ms)
    elif engine == "athena":
        missing = [k for k in ("database", "table") if not options.get(k)]
        if missing:
            raise EngineError(f"engine 'athena' needs {' and '.join(missing)} (--athena-database, --athena-table)")
        from .remote import boto_session

        session = boto_session(options.pop("session", None), options.pop("region", None))
        rows = _athena_errors(lambda: reduce_on_athena(session, lo_ms, hi_ms, **options), options)
    else:
        raise EngineError(f"unknown engine {engine!r}; use one of {', '.join(ENGINES)}")
    fill_reduced(con, rows, lo, hi)
    if progress:
        progress(len(files), len(files))
    return 1
