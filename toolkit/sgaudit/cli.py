"""The ``sgaudit`` command: a thin layer over `sgaudit.analyze`."""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import duckdb

from . import __version__, summaries
from .analysis import Analysis, analyze
from .errors import SgauditError
from .output import check_writable, companion, iso_time, output_kind, write_table
from .remote import is_uri
from .usage import STATUSES

COMPANIONS = ("unexplained", "rejected", "quality", "coverage", "problems")


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="sgaudit",
        description="Tell which AWS security group rules are used, proved from VPC Flow Logs.",
    )
    p.add_argument("--version", action="version", version=f"sgaudit {__version__}")
    sub = p.add_subparsers(dest="command", required=True)
    u = sub.add_parser(
        "usage", help="write the per-rule usage table",
        description="Read flow logs and an inventory snapshot; write one row per security group rule "
                    "with its status, evidence, connections, peers, ports and first/last seen. Companion "
                    "tables (unexplained, rejected, quality, coverage, problems) are written beside --out "
                    "as OUT.<name>.<ext>.",
    )
    _source_arguments(u)
    u.add_argument("--out", required=True, metavar="FILE",
                   help="usage table: .csv, .jsonl (.ndjson), .json or .parquet")

    f = sub.add_parser(
        "findings", help="write the findings: unused, attempted-only, overly permissive, redundant rules …",
        description="One row per finding: the resource, the kind, a severity, one sentence naming the resource "
                    "and the reason, the evidence, the fix and the AWS Security Hub control where one applies.",
    )
    _source_arguments(f)
    f.add_argument("--out", required=True, metavar="FILE",
                   help="findings: .csv, .jsonl (.ndjson), .json, .parquet or .md")

    pl = sub.add_parser(
        "plan", help="propose tighter rules that keep every observed connection, and prove it",
        description="Propose, per group, replacement rules that cover exactly the observed ports and peers, "
                    "and removal of unused rules; re-run the attribution with the proposed rules on the same "
                    "records and list any conversation that would be lost. Writes the plan (--out), the AWS CLI "
                    "commands (OUT.aws.sh), a Terraform snippet (OUT.tf), the proposed rules (OUT.proposed.csv) "
                    "and the re-check (OUT.lost.csv), those two in --out's table format (CSV beside .md). "
                    "Nothing is applied: sgaudit only reads from AWS.",
    )
    _source_arguments(pl)
    pl.add_argument("--out", required=True, metavar="FILE",
                    help="the plan: .md, .csv, .jsonl (.ndjson), .json or .parquet")
    pl.add_argument("--rule-budget", type=int, default=25, metavar="N",
                    help="at most N proposed rules per group and direction; peers merge into wider CIDRs, never "
                         "wider than the rule they replace, to fit (default 25)")
    pl.add_argument("--keep-attempted", action="store_true",
                    help="also keep conversations only attempted (one-way UDP such as syslog, unanswered SYNs)")
    pl.add_argument("--narrow-internet", action="store_true",
                    help="also narrow rules open to 0.0.0.0/0 or ::/0 to the internet addresses seen (by default "
                         "they keep their peer and only their ports narrow: a window's internet addresses are not "
                         "who needs a public endpoint, and scanners complete handshakes too)")

    r = sub.add_parser(
        "report", help="run an audit notebook and write it as one offline HTML report",
        description="Execute a parameterized sgaudit notebook with papermill and export it as one self-contained "
                    "HTML file (no code, no network requests), with the executed notebook beside it "
                    "(OUT.ipynb). Parameters: --parameters FILE first, then -p, then the named flags.",
    )
    r.add_argument("--notebook", default="audit_report", metavar="NAME|PATH",
                   help="audit_report (default), rule_usage, port_heatmap, investigate, findings, or the path of "
                        "an .ipynb")
    r.add_argument("--flow-logs", nargs="+", metavar="PATH", help="notebook parameter flow_logs (a list)")
    r.add_argument("--inventory", metavar="DIR", help="notebook parameter inventory")
    r.add_argument("--start", metavar="T", help="notebook parameter start (ISO 8601 or Unix seconds)")
    r.add_argument("--end", metavar="T", help="notebook parameter end, exclusive")
    r.add_argument("--format", dest="log_format", metavar="STR", help="notebook parameter log_format")
    r.add_argument("--time-bucket", metavar="STR", help="notebook parameter time_bucket (e.g. 1h, 1d)")
    r.add_argument("-p", "--parameter", nargs=2, action="append", default=[], metavar=("NAME", "VALUE"),
                   help="any notebook parameter; VALUE is read as YAML (3, true, null, [a, b]); repeatable")
    r.add_argument("--parameters", metavar="FILE.yaml", help="notebook parameters from a YAML mapping")
    r.add_argument("--out", metavar="FILE.html", help="the report (default out/NOTEBOOK.html)")
    r.add_argument("--kernel", metavar="NAME", help="Jupyter kernel (default: the notebook's, python3)")
    r.add_argument("--list-parameters", action="store_true",
                   help="print the notebook's parameters, defaults and help, and exit")
    r.add_argument("--no-progress", action="store_true", help="no progress bar")
    r.add_argument("--profile", metavar="NAME",
                   help="AWS profile the notebook reads s3:// or cloudwatch:// flow logs with (AWS_PROFILE)")
    r.add_argument("--endpoint-url", metavar="URL",
                   help="another endpoint for the AWS APIs, e.g. a local test server (AWS_ENDPOINT_URL)")

    c = sub.add_parser(
        "collect", help="take the inventory snapshot from AWS (read-only calls)",
        description="Write the inventory snapshot folder (security groups, rules, interfaces, prefix lists and "
                    "their entries, flow logs) with read-only EC2 calls, as the AWS CLI prints it. One region "
                    "goes straight into --out; several regions or profiles into --out/<account-id>/<region>/. "
                    "The IAM policy it needs is in docs/aws.md.",
    )
    c.add_argument("--profile", action="append", metavar="NAME",
                   help="AWS profile (default: the environment's credentials); repeat for several accounts")
    c.add_argument("--region", nargs="+", action="extend", metavar="R",
                   help="regions to read, or 'all' for every enabled region (default: the profile's region)")
    c.add_argument("--endpoint-url", metavar="URL", help="another AWS endpoint (a local test server)")
    c.add_argument("--out", required=True, metavar="DIR", help="the snapshot folder")
    c.add_argument("--no-progress", action="store_true", help="no progress bar")
    for command in (u, f, pl):
        command.set_defaults(command_parser=command)  # for main's own usage errors: the command's usage line
    return p


def _source_arguments(p: argparse.ArgumentParser) -> None:
    """The flags every analysing command shares: what to read and how."""
    p.add_argument("--flow-logs", nargs="+", default=[], metavar="PATH",
                   help="flow-log files or folders (S3 key layout, plain or Hive-style), text/gzip/Parquet/"
                        "CloudWatch JSON; several layouts may be mixed")
    p.add_argument("--inventory", required=True, metavar="DIR",
                   help="inventory snapshot folder (AWS CLI JSON: security-group-rules.json, …)")
    p.add_argument("--format", dest="log_format", metavar="STR",
                   help="log format of files without a header line, e.g. '${version} ${account-id} …' "
                        "(default: the version-2 default format)")
    p.add_argument("--start", metavar="T", help="window start, ISO 8601 or Unix seconds (default: first record)")
    p.add_argument("--end", metavar="T", help="window end, exclusive (default: last record)")
    p.add_argument("--threads", type=int, metavar="N", help="DuckDB threads (default: all cores)")
    p.add_argument("--memory-limit", default=None, metavar="SIZE",
                   help="DuckDB memory ceiling before spilling to disk (default 1GB)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    aws = p.add_argument_group("flow logs in AWS (s3://bucket/prefix, "
                               "cloudwatch://log-group[?stream=NAME&region=REGION])")
    aws.add_argument("--profile", metavar="NAME",
                     help="AWS profile for s3:// and cloudwatch:// flow logs and for --engine athena "
                          "(default: the environment's credentials)")
    aws.add_argument("--endpoint-url", metavar="URL", help="another endpoint for the AWS APIs (a local test server)")
    cache = aws.add_mutually_exclusive_group()
    cache.add_argument("--no-cache", action="store_true",
                       help="do not keep downloaded S3 objects (default: ~/.cache/sgaudit, or "
                            "$XDG_CACHE_HOME/sgaudit, or $SGAUDIT_CACHE_DIR)")
    cache.add_argument("--cache-dir", metavar="DIR", help="where downloaded S3 objects are kept")
    eng = p.add_argument_group("where the heavy step runs (the same reduction SQL on every engine)")
    eng.add_argument("--engine", choices=["duckdb", "athena", "spark"], default="duckdb",
                     help="duckdb: here (default); athena: where the flow logs are, only the reduced rows come "
                          "back (no --flow-logs needed); spark: a Spark session (EMR, Glue, Databricks, local)")
    eng.add_argument("--athena-database", metavar="NAME", help="Athena/Glue database of the flow-log table")
    eng.add_argument("--athena-table", metavar="NAME", help="the flow-log table (see docs/aws.md for its DDL)")
    eng.add_argument("--athena-workgroup", metavar="NAME", help="Athena workgroup")
    eng.add_argument("--athena-output", metavar="S3URI", help="s3:// location for Athena's query results")
    eng.add_argument("--athena-region", metavar="REGION", help="region of the Athena table")
    eng.add_argument("--spark-master", metavar="URL", help="Spark master (default local[*])")


class _FilesBar:
    """A tqdm bar over files.

    Drawn on a terminal only (a log file or a CI job gets the summary alone), and created at the first
    report, when the number of files is known. Once every file is read it says what runs next: on millions
    of conversations, classifying and matching them takes seconds more, which a full bar alone would leave
    looking like a hang.
    """

    READING, MATCHING = "reading flow logs", "files read; matching rules"
    #: Shown until the bar is drawn: finding the files and reading each one's first line comes before the
    #: bar knows its total, and takes seconds for a year of S3 deliveries (~0.1 ms a file).
    FINDING = "finding flow-log files and reading their headers…"

    def __init__(self) -> None:
        self.bar = None
        self.status = sys.stderr.isatty()
        if self.status:
            sys.stderr.write(self.FINDING)
            sys.stderr.flush()

    def _clear_status(self) -> None:
        if self.status:
            sys.stderr.write("\r\x1b[K")  # carriage return, then erase to the end of the line
            sys.stderr.flush()
            self.status = False

    def update(self, done: int, total: int) -> None:
        if self.bar is None:
            from tqdm import tqdm

            self._clear_status()
            self.bar = tqdm(total=total, unit="file", desc=self.READING, file=sys.stderr,
                            disable=not sys.stderr.isatty(), leave=False)
        self.bar.n = done
        if done >= total:
            self.bar.set_description(self.MATCHING, refresh=False)
        self.bar.refresh()

    def close(self) -> None:
        self._clear_status()  # an error before the first file leaves no half line for its message
        if self.bar is not None:
            self.bar.close()


def summary(result: Analysis, elapsed: float | None = None) -> str:
    """The one-screen summary: window, rules by status, records by bucket, what needs a look."""
    lo, hi = result.window
    lines = [
        f"window      {iso_time(lo) or '-'} .. {iso_time(hi) or '-'}",
        f"files       {len(result.files)} read"
        + (f" in {elapsed:.1f} s" if elapsed is not None else "")
        + (f"; {copies} left out as the same bytes as another (see problems)" if (copies := sum(
            1 for p in result.problems_list if p["kind"] == "duplicate_file")) else ""),
    ]
    cov = result.coverage
    snap = cov[cov["in_snapshot"]]
    outside = int((~cov["in_snapshot"]).sum())
    lines.append(f"interfaces  {int(snap['observed'].sum())} of {len(snap)} in the snapshot observed; "
                 f"{outside} in the logs but not in the snapshot")
    lines += [f"warning     {w}" for w in summaries.warnings(result)]
    counts = result.usage["status"].value_counts()
    # SPEC's `unused` includes rules whose referenced group or prefix list is not in the snapshot: they could
    # match nothing here, so their use is unknown, and the summary says how many they are.
    unknown = int((summaries.shown_statuses(summaries.rules(result))[0] == summaries.PEERS_UNKNOWN).sum())
    said = {"unused": f" (of them {unknown} of unknown use: peers not in the snapshot)" if unknown else ""}
    lines.append(f"rules       {len(result.usage)}: "
                 + ", ".join(f"{counts.get(s, 0)} {s}{said.get(s, '')}" for s in STATUSES))
    lines.append("records")
    q = result.quality
    for row in q.itertuples(index=False):
        if row.bucket == "total":
            lines.append(f"  {row.records:>12,}  total read (the buckets above add up to it)")
        elif row.records:
            lines.append(f"  {row.records:>12,}  {row.meaning}")
    n_unexplained = result.con.sql("SELECT count(*) FROM classified WHERE accepted AND n_rules = 0").fetchall()[0][0]
    lines.append(f"unexplained {n_unexplained:,} accepted conversation(s) no rule explains")
    lines.append(f"rejected    {len(result.rejected)} (interface, direction, protocol, port) with rejected attempts")
    if len(result.problems):
        kinds = result.problems["kind"].value_counts()
        lines.append("problems    " + ", ".join(f"{n} {k}" for k, n in kinds.items()))
    return "\n".join(lines)


def _analyze(args: argparse.Namespace) -> Analysis:
    """`analyze` with the shared flags, drawing a progress bar over files on a terminal."""
    bar = None if args.no_progress else _FilesBar()
    kwargs = {"memory_limit": args.memory_limit} if args.memory_limit else {}
    try:
        if args.engine != "duckdb":
            options = ({"database": args.athena_database, "table": args.athena_table,
                        "workgroup": args.athena_workgroup, "output_location": args.athena_output,
                        "region": args.athena_region, "endpoint_url": args.endpoint_url,
                        "session": args.profile}
                       if args.engine == "athena" else {"master": args.spark_master})
            kwargs.update(engine=args.engine, engine_options={k: v for k, v in options.items() if v})
        if any(is_uri(p) for p in args.flow_logs):
            # Only flow logs that live in AWS need a session, and only then is boto3 imported.
            kwargs.update(aws_session=args.profile, endpoint_url=args.endpoint_url,
                          cache=False if args.no_cache else (args.cache_dir or True))
        return analyze(args.flow_logs, args.inventory, start=args.start, end=args.end, log_format=args.log_format,
                       threads=args.threads, progress=bar.update if bar else None, **kwargs)
    finally:
        if bar is not None:
            bar.close()


def _usage(args: argparse.Namespace) -> int:
    output_kind(args.out)  # an unknown extension or an unwritable place fails before the analysis, not after
    check_writable(args.out)
    t0 = time.perf_counter()
    result = _analyze(args)
    try:
        written = [result.write("usage", args.out)]
        written += [result.write(name, companion(args.out, name)) for name in COMPANIONS]
        print(summary(result, time.perf_counter() - t0))
        print("wrote       " + "\n            ".join(str(p) for p in written))
    finally:
        result.close()
    return 0


def _markdown_or_table(path: str) -> str:
    """``md`` for a Markdown file, else the table format of the extension (an unknown one is an error).

    Also fails on a path that cannot be written: before the analysis, not after it.
    """
    kind = "md" if Path(path).suffix.lower() == ".md" else output_kind(Path(path), also=(".md",))
    check_writable(path)
    return kind


def _findings(args: argparse.Namespace) -> int:
    from . import findings

    kind = _markdown_or_table(args.out)
    result = _analyze(args)
    try:
        found = findings.findings(result)
        out = Path(args.out)
        if kind == "md":
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_text(findings.to_markdown(found))
        else:
            write_table(found, out)
        print(f"findings    {findings.counts(found)}")
        for k, n in found["kind"].value_counts().items():
            print(f"  {n:>6}  {k}")
        print(f"wrote       {out}")
    finally:
        result.close()
    return 0


def _plan(args: argparse.Namespace) -> int:
    from . import plan as plan_

    kind = _markdown_or_table(args.out)
    if args.rule_budget < 1:
        raise SgauditError(f"--rule-budget {args.rule_budget}: must be at least 1")
    result = _analyze(args)
    try:
        proposal = plan_.propose(result, rule_budget=args.rule_budget, keep_attempted=args.keep_attempted,
                                 narrow_internet=args.narrow_internet)
        lost = plan_.verify(result, proposal)
        out = Path(args.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        if kind == "md":
            out.write_text(plan_.to_markdown(proposal, lost))
        else:
            write_table(plan_.to_table(proposal), out)
        written = [out]
        for suffix, text in ((".aws.sh", plan_.to_aws_cli(proposal)), (".tf", plan_.to_terraform(proposal))):
            target = out.with_name(out.stem + suffix)
            target.write_text(text)
            written.append(target)
        # The tables beside the plan are in its own table format (CSV beside a Markdown plan), as usage's are.
        tables_at = out.with_suffix(".csv") if kind == "md" else out
        written.append(write_table(proposal.proposed_rules, companion(tables_at, "proposed")))
        written.append(write_table(lost, companion(tables_at, "lost")))
        actions = proposal.actions["action"].value_counts()
        print("plan        " + ", ".join(f"{actions.get(a, 0)} {a}" for a in ("replace", "remove", "keep")) +
              f"; {len(proposal.proposed_rules)} proposed rule(s)")
        print(f"re-check    {lost.attrs.get('checked', 0):,} observed conversation(s) re-attributed with the "
              f"proposed rules on the same records: {len(lost):,} lost")
        print("not proved  " + "\n            ".join(proposal.limits))
        print("wrote       " + "\n            ".join(str(p) for p in written))
        if len(lost):
            print(f"sgaudit: error: the plan would cut {len(lost)} observed conversation(s), listed in "
                  f"{written[-1]}; do not apply it, and please report this", file=sys.stderr)
            return 1
    finally:
        result.close()
    return 0


# The named flags of ``sgaudit report``: each sets the notebook parameter named like its argparse dest.
REPORT_FLAGS = ("flow_logs", "inventory", "start", "end", "log_format", "time_bucket")


def report_parameters(args: argparse.Namespace) -> dict:
    """The notebook parameters of ``sgaudit report``: the YAML file, then ``-p``, then the named flags."""
    from . import report  # nbformat and its schema take ~1 s to import: not at every start of sgaudit
    parameters = report.read_parameters_file(args.parameters) if args.parameters else {}
    parameters.update({name: report.parse_parameter_value(value) for name, value in args.parameter})
    parameters.update({name: getattr(args, name) for name in REPORT_FLAGS if getattr(args, name) is not None})
    return parameters


def _list_parameters(notebook: str, kernel_name: str | None) -> int:
    from . import report  # nbformat and its schema take ~1 s to import: not at every start of sgaudit
    path = report.notebook_path(notebook)
    declared = report.notebook_parameters(path, kernel_name)
    if not declared:
        print(f"{path}: no cell tagged 'parameters'; the notebook takes no parameters")
        return 0
    print(f"parameters of {path} (name = default  # help):")
    # papermill knows a type only from an annotation (``port: int = 22``).
    names = {name: name + (f": {p['inferred_type_name']}" if p["inferred_type_name"] != "None" else "")
             for name, p in declared.items()}
    width = max(len(n) for n in names.values())
    for name, p in declared.items():
        print(f"  {names[name]:<{width}} = {p['default']}" + (f"  # {p['help']}" if p["help"] else ""))
    return 0


def _report(args: argparse.Namespace) -> int:
    from . import report  # nbformat and its schema take ~1 s to import: not at every start of sgaudit
    if args.list_parameters:
        return _list_parameters(args.notebook, args.kernel)
    parameters = report_parameters(args)
    out = args.out or f"out/{report.notebook_path(args.notebook).stem}.html"
    # The notebook's kernel is another process: it inherits the environment, where boto3 looks for these.
    aws_env = {k: v for k, v in (("AWS_PROFILE", args.profile), ("AWS_ENDPOINT_URL", args.endpoint_url)) if v}
    saved = {k: os.environ.get(k) for k in aws_env}
    os.environ.update(aws_env)
    try:
        files = report.run(args.notebook, out, parameters, kernel_name=args.kernel, progress=not args.no_progress)
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    print(f"wrote       {files.html} ({files.size / 1e6:.1f} MB)\n            {files.notebook}")
    return 0


def _collect(args: argparse.Namespace) -> int:
    import boto3
    from botocore.exceptions import BotoCoreError

    from . import collect

    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise SgauditError(f"{out}: is a file; the snapshot is a folder: give a folder name to --out")
    check_writable(out / "security-groups.json")
    profiles = args.profile or [None]
    # Several accounts share one --out only in the <account-id>/<region> layout.
    tree = True if len(profiles) > 1 else None
    # Every account and region is read before anything is written: a failure anywhere leaves --out as it was.
    gathered = []
    for profile in profiles:
        try:
            session = boto3.Session(profile_name=profile)
        except BotoCoreError as exc:
            raise collect.CollectError(f"--profile {profile}: {exc}") from exc
        gathered += collect.read(session, args.region, args.out, endpoint_url=args.endpoint_url,
                                 progress=not args.no_progress and sys.stderr.isatty(), tree=tree)
    written = collect.write(gathered)
    for folder in written:
        n = collect.counts(folder)
        print(f"wrote       {folder}: {n['SecurityGroups']} groups, {n['SecurityGroupRules']} rules, "
              f"{n['NetworkInterfaces']} interfaces, {n['PrefixLists']} prefix lists, "
              f"{n['FlowLogs']} flow logs")
    # A multi-region tree keeps the regions of earlier runs, and the inventory reads every one of them.
    stale = sorted(d for d in out.glob("*/*") if (d / collect.FILES[0][0]).is_file() and d not in written)
    for folder in stale:
        print(f"note        {folder}: from an earlier run, not collected now, and read with this snapshot; "
              "remove it if that region's rules are not to be audited")
    return 0


def main(argv: list[str] | None = None) -> int:
    """Run the command line; returns the exit status (0 ok, 2 on an error sgaudit explains)."""
    parser = _parser()
    args = parser.parse_args(argv)
    if getattr(args, "engine", None) not in (None, "athena") and not args.flow_logs:
        # Required unless Athena reads the flow logs where they are: argparse's own error, with the usage.
        args.command_parser.error("--flow-logs is required (files, folders, s3:// or cloudwatch:// URIs); "
                                  "only --engine athena reads them where they are, from --athena-table")
    try:
        if args.command == "usage":
            return _usage(args)
        if args.command == "report":
            return _report(args)
        if args.command == "findings":
            return _findings(args)
        if args.command == "plan":
            return _plan(args)
        if args.command == "collect":
            return _collect(args)
    except SgauditError as exc:
        print(f"sgaudit: error: {exc}", file=sys.stderr)
        return 2
    except duckdb.OutOfMemoryException as exc:
        # DuckDB spills what it can past --memory-limit; a step that cannot spill ends here.
        first = str(exc).splitlines()[0]
        print(f"sgaudit: error: the analysis needed more than its memory limit ({first}). Run again with a "
              "larger --memory-limit (e.g. 2GB) or fewer --threads, or split the window with --start/--end.",
              file=sys.stderr)
        return 2
    except BrokenPipeError:
        # The reader of our output went away (sgaudit … | head): stop quietly, as other Unix tools do.
        sys.stdout = open(os.devnull, "w")  # noqa: SIM115 - so that the interpreter's final flush cannot fail
        return 141
    except OSError as exc:
        # A file that cannot be read or written (permissions, a full disk, a folder where a file should be).
        where = f"{exc.filename}: " if exc.filename else ""
        print(f"sgaudit: error: {where}{exc.strerror or exc}. Check the path and its permissions.", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("sgaudit: interrupted", file=sys.stderr)
        return 130
    return 1
