"""The reduction on other engines (`sgaudit.engines`): Athena's SQL, Spark against DuckDB, Athena's API.

Spark runs for real (local[2], one session for the module). Athena runs against moto's server, which
does not execute SQL: it returns results preloaded through its API, so those tests check the
orchestration (start, poll, page, type) and the wiring into `analyze`, with DuckDB's own reduced rows as
the canned result.
"""

from __future__ import annotations

import json
import os
import re
import sys
import time
import urllib.request
from pathlib import Path

import duckdb
import pandas as pd
import pytest
import sgaudit
import sqlglot
from sgaudit import engines, fields, reduction, sources
from sgaudit import records as records_

ROOT = Path(__file__).resolve().parents[1] / "sample_logs"
INVENTORY = ROOT / "inventory"
S3 = ROOT / "flow-logs"
CW_TEXT = ROOT / "cloudwatch" / "app-eni.log"
WINDOW = (-(2**62), 2**62)


def _scan(paths: list[Path], workdir: Path) -> str:
    """DuckDB's typed records of every file under ``paths``, all layouts in one SELECT."""
    files = [sources.sniff(p) for p in sources.discover(paths)]
    return " UNION ALL BY NAME ".join(f"SELECT * FROM {records_.scan_sql(g, workdir)}"
                                      for g in records_.group_files(files))


def _rows(df: pd.DataFrame) -> list[tuple]:
    """Every row as a tuple of plain values (NULL → None, integers as int), columns by name, sorted."""
    df = df[sorted(df.columns)]
    out = []
    for row in df.itertuples(index=False):
        vals = []
        for v in row:
            if v is None or v is pd.NA or (isinstance(v, float) and v != v):
                vals.append(None)
            elif isinstance(v, (bool, str)):
                vals.append(v)
            else:
                vals.append(int(v) if float(v).is_integer() else float(v))
        out.append(tuple(vals))
    return sorted(out, key=lambda t: tuple((x is None, str(x)) for x in t))


# --- (a) the SQL -------------------------------------------------------------------------------------


def test_athena_sql_parses_in_athenas_dialect_and_round_trips():
    sql = engines.reduction_sql("athena", '"flows"."vpc_logs"', 0, 10**13, source_file='"$path"')
    tree = sqlglot.parse_one(sql, read="athena")
    assert tree.sql(dialect="athena") == sql
    assert "BITWISE_AND(" in sql and "BITWISE_OR_AGG(" in sql
    assert "BIT_OR(" not in sql.replace("BITWISE_OR_AGG(", "") and " & " not in sql
    assert "USMALLINT" not in sql and "UTINYINT" not in sql  # DuckDB-only types
    assert '"$path"' in sql


def test_spark_sql_keeps_bit_operators_and_quotes_end():
    sql = engines.reduction_sql("spark", "records", 0, 10**13)
    sqlglot.parse_one(sql, read="spark")
    assert "BIT_OR(" in sql and "& 18" in sql and "`end`" in sql


def test_athena_sql_back_in_duckdb_gives_the_same_rows(records_parquet):
    # Athena cannot run here; reading its SQL back into DuckDB checks that the bit operations survived
    # the trip (BITWISE_AND → &, BITWISE_OR_AGG → BIT_OR), not that Trino agrees, which needs Athena.
    con = duckdb.connect()
    con.execute(f"CREATE VIEW recs AS SELECT * FROM read_parquet('{records_parquet}')")
    athena = engines.reduction_sql("athena", "recs", *WINDOW)
    back = sqlglot.transpile(athena, read="athena", write="duckdb")[0]
    assert _rows(con.sql(back).df()) == _rows(con.sql(reduction.reduce_sql("recs", *WINDOW)).df())


def test_athena_scan_is_pruned_to_the_windows_days(aws, monkeypatch):
    sent: list[str] = []
    monkeypatch.setattr(engines, "run_athena", lambda session, sql, *a, **k: sent.append(sql) or pd.DataFrame())
    lo = sgaudit.analysis.parse_time("2025-02-06T15:00:00Z", "lo")
    hi = sgaudit.analysis.parse_time("2025-02-07T00:00:00Z", "hi")
    engines.reduce_on_athena(None, lo, hi, database="flows", table="vpc_logs", day_column="day",
                             available=fields.USED)
    where = "WHERE \"day\" >= '2025/02/05' AND \"day\" <= '2025/02/08'"
    assert where in sent[0] and 'CAST("source_file" AS VARCHAR) AS source_file' in sent[0]
    sqlglot.parse_one(sent[0], read="athena")
    engines.reduce_on_athena(None, *WINDOW, database="flows", table="vpc_logs", day_column="day",
                             available=fields.USED)
    assert "WHERE" not in sent[1].split("AS timed")[0] and '"$path"' in sent[1]


def test_missing_fields_are_null_columns():
    sql = engines.reduction_sql("athena", "t", 0, 1, available=["interface-id", "srcaddr"])
    assert 'CAST(NULL AS VARCHAR) AS "flow_direction"' in sql and 'CAST("srcaddr" AS VARCHAR)' in sql


def test_unknown_engine_is_an_sgaudit_error():
    with pytest.raises(sgaudit.SgauditError, match="unknown engine 'oracle'"):
        engines.reduction_sql("oracle", "t", 0, 1)


@pytest.mark.parametrize("partitioning", ["day", "hour"])
def test_athena_ddl_parses_with_partition_projection(partitioning):
    ddl = engines.athena_table_ddl("flows", "vpc_logs", "s3://logs/AWSLogs/1/vpcflowlogs/us-east-1",
                                   fields_=[f.name for f in sgaudit.fields.FIELDS if f.version <= 5],
                                   partitioning=partitioning)
    tree = sqlglot.parse_one(ddl, read="athena")
    assert tree.args["kind"] == "TABLE"
    text = tree.sql(dialect="athena")
    assert "'projection.enabled'='true'" in text and "'skip.header.line.count'='1'" in text
    assert "`end` BIGINT" in text and "`flow_direction` STRING" in text
    template = "s3://logs/AWSLogs/1/vpcflowlogs/us-east-1/${day}" + ("/${hour}" if partitioning == "hour" else "")
    assert f"'storage.location.template'='{template}'" in text


def test_athena_ddl_rejects_unknown_fields():
    with pytest.raises(sgaudit.SgauditError, match="unknown flow-log field"):
        engines.athena_table_ddl("d", "t", "s3://b/", fields_=["srcaddr", "nonsense"])


# --- (b) Spark against DuckDB ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def spark():
    os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
    pytest.importorskip("pyspark")
    session = engines.spark_session("local[2]")
    session.conf.set("spark.sql.shuffle.partitions", "4")  # a few rows: 200 partitions only cost time
    yield session
    session.stop()


@pytest.fixture(scope="module")
def records_parquet(tmp_path_factory):
    """The S3-layout sample files read once by DuckDB into typed records, as one Parquet file."""
    out = tmp_path_factory.mktemp("records") / "records.parquet"
    con = duckdb.connect()
    con.execute(f"COPY ({_scan([S3], out.parent)}) TO '{out}' (FORMAT parquet)")
    con.close()
    return out


def test_same_reduced_rows_on_duckdb_and_spark(spark, records_parquet):
    con = duckdb.connect()
    scan = f"read_parquet('{records_parquet}')"
    local = con.sql(reduction.reduce_sql(scan, *WINDOW)).df()
    transpiled_source = con.sql(engines.reduction_sql("duckdb", scan, *WINDOW)).df()
    t0 = time.monotonic()
    remote = engines.run_spark(spark, records_parquet, *WINDOW)
    print(f"spark reduction: {time.monotonic() - t0:.1f} s")
    assert len(local) > 10 and set(local.columns) == set(remote.columns)
    assert _rows(remote) == _rows(local) == _rows(transpiled_source)
    # A window that cuts the records: the bucket logic, not only the sums, agrees.
    mid = int(con.sql(f"SELECT median(start) * 1000 FROM {scan}").fetchall()[0][0])
    assert _rows(engines.run_spark(spark, records_parquet, mid, 2**62)) == _rows(
        con.sql(reduction.reduce_sql(scan, mid, 2**62)).df())


@pytest.mark.parametrize("paths", [[S3], [S3, CW_TEXT]], ids=["s3-v5", "s3-and-v2-text"])
def test_analyze_on_spark_equals_duckdb(spark, paths):
    local = sgaudit.analyze(paths, INVENTORY)
    remote = sgaudit.analyze(paths, INVENTORY, engine="spark", engine_options={"session": spark})
    try:
        pd.testing.assert_frame_equal(remote.usage, local.usage)
        pd.testing.assert_frame_equal(remote.quality, local.quality)
        assert remote.window == local.window
    finally:
        local.close()
        remote.close()


# --- (c) Athena's API, on moto ------------------------------------------------------------------------


def _moto_api(url: str, path: str, body: dict) -> int:
    req = urllib.request.Request(f"{url}/moto-api/{path}", method="POST", data=json.dumps(body).encode(),
                                 headers={"Content-Type": "application/json"})
    return urllib.request.urlopen(req).status


def _preload(url: str, results: list[dict], region: str = "us-east-1") -> None:
    assert _moto_api(url, "static/athena/query-results", {"results": results, "region": region}) == 201


def _athena_result(df: pd.DataFrame) -> dict:
    """A DataFrame as Athena returns it: a header row, then every value as text; NULL has no value."""
    kinds = {"b": "boolean", "i": "bigint", "u": "bigint", "f": "double"}
    info = [{"Name": c, "Label": c, "Type": kinds.get(df[c].dtype.kind, "varchar")} for c in df.columns]

    def cell(v):
        if v is None or v is pd.NA or (isinstance(v, float) and v != v):
            return {}
        if isinstance(v, bool):
            return {"VarCharValue": "true" if v else "false"}
        return {"VarCharValue": str(int(v)) if isinstance(v, float) and v.is_integer() else str(v)}

    rows = [{"Data": [{"VarCharValue": c} for c in df.columns]}]
    rows += [{"Data": [cell(v) for v in r]} for r in df.astype(object).itertuples(index=False)]
    return {"rows": rows, "column_info": info}


def _glue_table(aws, database: str, table: str, names, *, day: bool = False) -> None:
    """A flow-log table in moto's Glue Data Catalog, as Athena's CREATE EXTERNAL TABLE would leave it."""
    glue = aws.session().client("glue", endpoint_url=aws.url)
    try:
        glue.create_database(DatabaseInput={"Name": database})
    except glue.exceptions.AlreadyExistsException:
        pass
    columns = [{"Name": fields.BY_NAME[n].column, "Type": "string"} for n in names]
    glue.create_table(DatabaseName=database, TableInput={
        "Name": table, "StorageDescriptor": {"Columns": columns, "Location": "s3://logs/AWSLogs/"},
        "PartitionKeys": [{"Name": "day", "Type": "string"}] if day else [],
        "Parameters": {"projection.day.format": "yyyy/MM/dd"} if day else {}})


class _Response:
    status_code = 200
    headers: dict = {}


def test_run_athena_polls_pages_and_types(aws):
    session = aws.session()
    calls: list[tuple[str, dict]] = []
    info = [{"Name": "bucket", "Type": "varchar"}, {"Name": "records", "Type": "bigint"},
            {"Name": "resolved", "Type": "boolean"}]
    _preload(aws.url, [{"rows": [{"Data": [{"VarCharValue": "bucket"}, {"VarCharValue": "records"},
                                           {"VarCharValue": "resolved"}]},
                                 {"Data": [{"VarCharValue": "ok"}, {"VarCharValue": "12"},
                                           {"VarCharValue": "true"}]},
                                 {"Data": [{"VarCharValue": "nodata"}, {"VarCharValue": "3"}, {}]}],
                        "column_info": info}])

    def record(event_name, params, **kwargs):
        body = json.loads(params["body"] or b"{}")
        calls.append((event_name.split(".")[-1], body))
        # moto returns every row on one page; the second page that a NextToken asks for is made here.
        if event_name.endswith("GetQueryResults") and body.get("NextToken") == "page-2":
            return _Response(), {"ResultSet": {"Rows": [{"Data": [{"VarCharValue": "malformed"},
                                                                  {"VarCharValue": "1"}, {}]}],
                                               "ResultSetMetadata": {"ColumnInfo": info}}}
        return None

    def first_page_has_more(event_name, parsed, **kwargs):
        if sum(1 for op, _ in calls if op == "GetQueryResults") == 1:
            parsed["NextToken"] = "page-2"

    session.events.register("before-call.athena", record)
    session.events.register("after-call.athena.GetQueryResults", first_page_has_more)
    states: list[str] = []
    session.events.register("after-call.athena.GetQueryExecution",
                            lambda parsed, **kw: states.append(parsed["QueryExecution"]["Status"]["State"]))
    # moto's executions move QUEUED → RUNNING → SUCCEEDED one status call at a time, so polling happens.
    _moto_api(aws.url, "state-manager/set-transition",
              {"model_name": "athena::execution", "transition": {"progression": "manual", "times": 1}})
    try:
        df = engines.run_athena(session, "SELECT 1", "flows", "primary", "s3://results/sgaudit/",
                                endpoint_url=aws.url, poll=0)
    finally:
        _moto_api(aws.url, "state-manager/unset-transition", {"model_name": "athena::execution"})
    ops = [op for op, _ in calls]
    assert ops[0] == "StartQueryExecution" and states == ["RUNNING", "SUCCEEDED"]
    assert ops[-2:] == ["GetQueryResults", "GetQueryResults"] and calls[-1][1]["NextToken"] == "page-2"
    start = calls[0][1]
    assert start["QueryExecutionContext"]["Database"] == "flows" and start["WorkGroup"] == "primary"
    assert start["ResultConfiguration"]["OutputLocation"] == "s3://results/sgaudit/"
    assert list(df["bucket"]) == ["ok", "nodata", "malformed"]
    assert str(df["records"].dtype) == "Int64" and list(df["records"]) == [12, 3, 1]
    assert str(df["resolved"].dtype) == "boolean" and df["resolved"].tolist()[0] is True
    assert df["resolved"].isna().tolist() == [False, True, True]


def test_failed_athena_query_raises_with_the_reason(aws):
    # moto's queries always end SUCCEEDED, so the FAILED status is answered here, before the call.
    session = aws.session()
    reason = "SYNTAX_ERROR: line 1:8: Column 'flow_direction' cannot be resolved"

    def failed(model, **kwargs):
        return _Response(), {"QueryExecution": {"QueryExecutionId": "q", "Status": {
            "State": "FAILED", "StateChangeReason": reason}}}

    session.events.register("before-call.athena.GetQueryExecution", failed)
    with pytest.raises(engines.AthenaQueryError, match="ended FAILED: SYNTAX_ERROR.*flow_direction"):
        engines.run_athena(session, "SELECT flow_direction FROM t", "flows", endpoint_url=aws.url, poll=0)


def test_analyze_on_athena_fills_reduced_from_the_query(aws, monkeypatch):
    # The canned result is DuckDB's own reduction of the sample files: what Athena would return.
    con = duckdb.connect()
    reduced = con.sql(reduction.reduce_sql(f"({_scan([S3], Path('.'))})", *WINDOW)).df()
    con.close()
    _preload(aws.url, [_athena_result(reduced)])
    _glue_table(aws, "flows", "vpc_logs", fields.USED)
    sent: list[str] = []
    real = engines.run_athena
    monkeypatch.setattr(engines, "run_athena", lambda session, sql, *a, **k: sent.append(sql) or real(
        session, sql, *a, **k))
    local = sgaudit.analyze([S3], INVENTORY)
    remote = sgaudit.analyze([], INVENTORY, engine="athena", engine_options={
        "session": aws.session(), "endpoint_url": aws.url, "database": "flows", "table": "vpc_logs",
        "output_location": "s3://results/", "poll": 0})
    try:
        assert len(sent) == 1 and 'FROM "flows"."vpc_logs"' in sent[0] and "BITWISE_OR_AGG" in sent[0]
        pd.testing.assert_frame_equal(remote.usage, local.usage)
    finally:
        local.close()
        remote.close()


def test_athena_needs_database_and_table():
    with pytest.raises(sgaudit.SgauditError, match="needs database and table"):
        sgaudit.analyze([], INVENTORY, engine="athena", engine_options={})


def test_cli_engine_spark_gives_the_usage_of_duckdb(tmp_path, spark):
    from sgaudit.cli import main

    args = ["--flow-logs", str(S3), "--inventory", str(INVENTORY), "--no-progress"]
    assert main(["usage", *args, "--out", str(tmp_path / "duckdb.csv")]) == 0
    assert main(["usage", *args, "--engine", "spark", "--spark-master", "local[2]",
                 "--out", str(tmp_path / "spark.csv")]) == 0
    pd.testing.assert_frame_equal(pd.read_csv(tmp_path / "spark.csv"), pd.read_csv(tmp_path / "duckdb.csv"))


def test_cli_engine_athena_needs_its_table(tmp_path, capsys):
    from sgaudit.cli import main

    assert main(["usage", "--inventory", str(INVENTORY), "--engine", "athena", "--no-progress",
                 "--out", str(tmp_path / "u.csv")]) == 2
    assert "needs database and table" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exc:
        main(["usage", "--inventory", str(INVENTORY), "--no-progress", "--out", str(tmp_path / "u.csv")])
    err = capsys.readouterr().err
    # argparse's error of the command itself: its usage line, not the top-level list of commands
    assert exc.value.code == 2 and "sgaudit usage: error: --flow-logs is required" in err
    assert err.startswith("usage: sgaudit usage ")


def test_athena_reads_the_tables_columns_and_day_partition_from_glue(aws, monkeypatch):
    # A table made for the version-2 format has no tcp_flags or flow_direction: the reduction reads them
    # as NULL instead of failing on Athena; its projected day partition prunes the scan to the window.
    _glue_table(aws, "flows", "v2_logs", fields.DEFAULT_FORMAT, day=True)
    sent: list[str] = []
    monkeypatch.setattr(engines, "run_athena", lambda session, sql, *a, **k: sent.append(sql) or pd.DataFrame())
    lo = sgaudit.analysis.parse_time("2025-02-06T15:00:00Z", "lo")
    hi = sgaudit.analysis.parse_time("2025-02-07T00:00:00Z", "hi")
    engines.reduce_on_athena(aws.session(), lo, hi, database="flows", table="v2_logs", endpoint_url=aws.url)
    [sql] = sent
    assert 'CAST(NULL AS VARCHAR) AS "flow_direction"' in sql and 'CAST(NULL AS SMALLINT) AS "tcp_flags"' in sql
    assert 'CAST("srcaddr" AS VARCHAR)' in sql and "\"day\" >= '2025/02/05'" in sql
    sqlglot.parse_one(sql, read="athena")


def test_athena_table_missing_or_not_a_flow_log_table_is_a_clear_error(aws):
    _glue_table(aws, "flows", "orders", ["srcaddr", "dstaddr", "bytes"])
    with pytest.raises(engines.EngineError, match="flows.nowhere is not in the Glue Data Catalog.*--athena-table"):
        engines.reduce_on_athena(aws.session(), *WINDOW, database="flows", table="nowhere", endpoint_url=aws.url)
    with pytest.raises(engines.EngineError, match="flows.orders has no column interface_id, srcport, dstport"):
        engines.reduce_on_athena(aws.session(), *WINDOW, database="flows", table="orders", endpoint_url=aws.url)


def _profile(tmp_path: Path, monkeypatch, region: str) -> None:
    """An AWS profile ``audit`` (fake keys, ``region``) in config files of its own; no region in the environment."""
    (tmp_path / "config").write_text(f"[profile audit]\nregion = {region}\n")
    (tmp_path / "credentials").write_text("[audit]\naws_access_key_id = profilekey\n"
                                          "aws_secret_access_key = profilesecret\n")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "credentials"))
    monkeypatch.delenv("AWS_DEFAULT_REGION", raising=False)
    monkeypatch.delenv("AWS_REGION", raising=False)


def test_cli_engine_athena_reads_with_the_profile(aws, tmp_path, monkeypatch):
    # The table is in the profile's region only: found there, the run is the local one.
    from sgaudit.cli import main

    con = duckdb.connect()
    reduced = con.sql(reduction.reduce_sql(f"({_scan([S3], Path('.'))})", *WINDOW)).df()
    con.close()
    _preload(aws.url, [_athena_result(reduced)], region="eu-west-1")
    glue = aws.session("eu-west-1").client("glue", endpoint_url=aws.url)
    glue.create_database(DatabaseInput={"Name": "flows"})
    glue.create_table(DatabaseName="flows", TableInput={"Name": "vpc_logs", "StorageDescriptor": {
        "Columns": [{"Name": fields.BY_NAME[n].column, "Type": "string"} for n in fields.USED]}})
    _profile(tmp_path, monkeypatch, "eu-west-1")
    athena = ["--inventory", str(INVENTORY), "--engine", "athena", "--athena-database", "flows",
              "--athena-table", "vpc_logs", "--athena-output", "s3://results/", "--endpoint-url", aws.url,
              "--no-progress"]
    assert main(["usage", *athena, "--profile", "audit", "--out", str(tmp_path / "athena.csv")]) == 0
    assert main(["usage", "--flow-logs", str(S3), "--inventory", str(INVENTORY), "--no-progress",
                 "--out", str(tmp_path / "local.csv")]) == 0
    pd.testing.assert_frame_equal(pd.read_csv(tmp_path / "athena.csv"), pd.read_csv(tmp_path / "local.csv"))


def _denied(*args, **kwargs):
    from botocore.exceptions import ClientError

    raise ClientError({"Error": {"Code": "AccessDeniedException", "Message": "not allowed"}}, "GetTable")


@pytest.mark.parametrize("case, expected", [
    ("no-region", "Athena table flows.vpc_logs: no AWS region is configured. Give --athena-region"),
    ("no-credentials", "Athena table flows.vpc_logs: no AWS credentials found. Use --profile"),
    ("no-such-profile", "AWS profile 'nosuch': .* check --profile against aws configure list-profiles"),
    ("access-denied", r"Athena table flows.vpc_logs: AWS refused GetTable \(AccessDeniedException: not allowed\); "
                      "the identity needs the Athena policy"),
])
def test_cli_engine_athena_aws_errors_are_clear_and_exit_2(aws, tmp_path, monkeypatch, capsys, case, expected):
    from sgaudit.cli import main

    _profile(tmp_path, monkeypatch, "us-east-1")
    for k in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        monkeypatch.delenv(k, raising=False)
    args = ["usage", "--inventory", str(INVENTORY), "--engine", "athena", "--athena-database", "flows",
            "--athena-table", "vpc_logs", "--endpoint-url", aws.url, "--no-progress", "--out", str(tmp_path / "u.csv")]
    if case == "no-region":  # credentials, but no region anywhere
        monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
        monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    elif case == "no-credentials":
        args += ["--athena-region", "us-east-1"]
    elif case == "no-such-profile":
        args += ["--profile", "nosuch"]
    else:
        args += ["--profile", "audit"]
        monkeypatch.setattr(engines, "athena_table_layout", _denied)
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and re.search(expected, err), err


def test_engine_spark_without_pyspark_says_how_to_install_it(tmp_path, monkeypatch, capsys):
    from sgaudit.cli import main

    monkeypatch.setitem(sys.modules, "pyspark", None)
    monkeypatch.setitem(sys.modules, "pyspark.sql", None)
    assert main(["usage", "--flow-logs", str(S3), "--inventory", str(INVENTORY), "--engine", "spark",
                 "--no-progress", "--out", str(tmp_path / "u.csv")]) == 2
    err = capsys.readouterr().err
    assert "engine 'spark' needs pyspark and a Java runtime" in err and "pip install pyspark" in err
