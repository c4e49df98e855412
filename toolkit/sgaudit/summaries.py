"""What the notebooks and the report show, as DataFrames.

Rules with their context, rules by status per group, world-open rules and who reached them, top talkers,
the peers behind a rule, one interface's or one peer's conversations, and the window and coverage in a
few lines.

Every function takes a finished `Analysis` (or its usage table) and returns a pandas DataFrame; the heavy
ones aggregate in DuckDB so that nothing as long as the input comes into pandas. Views
(`sgaudit.figures`, `sgaudit.tables`) draw them.
"""

from __future__ import annotations

import difflib
import ipaddress
from typing import TYPE_CHECKING

import pandas as pd

from . import __version__
from .errors import SgauditError, as_list, whole_number
from .output import iso_time
from .usage import EVIDENCE_BY_RANK, STATUSES, evidence_rank_sql, ms_to_utc

if TYPE_CHECKING:
    from .analysis import Analysis

def rules(analysis: Analysis) -> pd.DataFrame:
    """SPEC's usage table plus what a reader needs beside it: the rule's description, the group's VPC.

    ``peers_known`` is False for a rule whose referenced group or prefix list is not in the snapshot: it
    could match nothing here, so its status says nothing about its use.
    """
    inv = analysis.inventory
    out = analysis.usage.merge(inv.rules[["rule_id", "description"]], on="rule_id", how="left")
    out = out.merge(inv.groups[["group_id", "vpc_id"]], on="group_id", how="left")
    for col in ("description", "vpc_id"):
        out[col] = out[col].fillna("").astype(str)
    out["peers_known"] = ~out["rule_id"].isin(inv.unresolved_rules())
    return out


def filter_rules(df: pd.DataFrame, group_ids=None, status=None, direction=None, vpc_id=None) -> pd.DataFrame:
    """The rows of a `rules` frame that pass every filter given (a value or a list; empty means all).

    Raises
    ------
    SgauditError
        When a filter value matches nothing the frame could hold (a misspelt status or direction).
    """
    def values(v) -> list:
        return [] if isinstance(v, str) and v == "all" else as_list(v)

    checks = {"status": (values(status), list(STATUSES)), "direction": (values(direction), ["ingress", "egress"])}
    for name, (given, known) in checks.items():
        bad = [v for v in given if v not in known]
        if bad:
            raise SgauditError(f"{name} {bad[0]!r} is not one of {', '.join(known)}")
    mask = pd.Series(True, index=df.index)
    for col, given in (("group_id", values(group_ids)), ("status", checks["status"][0]),
                       ("direction", checks["direction"][0]), ("vpc_id", values(vpc_id))):
        if given:
            mask &= df[col].isin(given)
    return df[mask].reset_index(drop=True)


#: How a report names an `unused` rule whose referenced group or prefix list is not in the snapshot: it
#: could match nothing here, so nothing is known about its use. SPEC's usage table still says `unused`.
PEERS_UNKNOWN = "unknown use (peers not in the snapshot)"


def shown_statuses(rules: pd.DataFrame) -> tuple[pd.Series, list[str]]:
    """Each rule's status as a report shows it, and the statuses in order.

    With a ``peers_known`` column (a `rules` frame), an unused rule whose peers are not in the snapshot is
    `PEERS_UNKNOWN`, listed with the statuses of no evidence (before ``unobserved``) when there is one;
    without it, SPEC's statuses as they are.
    """
    status = rules["status"].astype(object)
    order = list(STATUSES)
    if "peers_known" in rules.columns:
        unknown = (status == "unused") & ~rules["peers_known"].astype(bool)
        if unknown.any():
            status = status.mask(unknown, PEERS_UNKNOWN)
            order.insert(order.index("unobserved"), PEERS_UNKNOWN)
    return status, order


def rules_by_status(rules: pd.DataFrame) -> pd.DataFrame:
    """Per group: how many of its rules are used, attempted, unused, unobserved, unattached.

    Given a `rules` frame, unused rules whose peers are not in the snapshot are counted apart
    (`shown_statuses`), so that the ``unused`` column holds only rules known to be unused.
    """
    status, order = shown_statuses(rules)
    counts = pd.crosstab([rules["group_id"], rules["group_name"]], status.rename("status"))
    counts = counts.reindex(columns=order, fill_value=0)
    counts["rules"] = counts.sum(axis=1)
    return counts.reset_index().rename_axis(columns=None)


def world_open(analysis: Analysis) -> pd.DataFrame:
    """Ingress rules open to the whole internet and what actually reached them.

    Open to the whole internet: 0.0.0.0/0, ::/0, or a prefix list whose entries cover either
    (`Inventory.world_rules`).

    Each peer counts once, under the best evidence among its conversations with the rule, so the three
    add up to ``peers``: ``established_peers`` completed a handshake, ``inferred_peers`` talked both ways
    without one, ``attempt_peers`` only knocked (a SYN answered by RST, or nothing back): scanners,
    typically.
    """
    u = rules(analysis)
    u = u[(u["direction"] == "ingress") & u["rule_id"].isin(analysis.inventory.world_rules())]
    per_evidence = analysis.con.sql("""
        SELECT rule_id,
               count(*) FILTER (WHERE best = 3) AS established_peers,
               count(*) FILTER (WHERE best = 2) AS inferred_peers,
               count(*) FILTER (WHERE best = 1) AS attempt_peers
        FROM (
            SELECT cr.rule_id, c.peer_addr,
                   max(CASE c.evidence WHEN 'established' THEN 3 WHEN 'inferred' THEN 2 ELSE 1 END) AS best
            FROM conversation_rules cr JOIN classified c USING (conversation_id)
            WHERE c.accepted AND c.direction = 'inbound'
            GROUP BY cr.rule_id, c.peer_addr
        ) AS per_peer
        GROUP BY rule_id
    """).df()
    out = u.merge(per_evidence, on="rule_id", how="left")
    for col in ("established_peers", "inferred_peers", "attempt_peers"):
        out[col] = out[col].fillna(0).astype("int64")
    cols = ["group_id", "group_name", "rule_id", "protocol", "from_port", "to_port", "peer", "description",
            "status", "evidence", "connections", "peers", "established_peers", "inferred_peers", "attempt_peers",
            "ports", "last_seen"]
    return out[cols].sort_values(["connections", "group_id"], ascending=[False, True], ignore_index=True)


def _how_many(value: object, name: str) -> int:
    """A row limit given by a notebook or a caller: a whole number, 0 or more."""
    if not whole_number(value) or value < 0:
        raise SgauditError(f"{name} {value!r}: must be a whole number, 0 or more")
    return value


def interfaces_of(analysis: Analysis, group_ids=None) -> set[str] | None:
    """The interfaces that carry any of ``group_ids`` (None when no group is given: every interface)."""
    ids = as_list(group_ids)
    if not ids:
        return None
    ig = analysis.inventory.interface_groups
    return set(ig.loc[ig["group_id"].isin(ids), "interface_id"])


def for_groups(df: pd.DataFrame, analysis: Analysis, group_ids=None) -> pd.DataFrame:
    """The rows of a per-interface table (coverage, rejected, unexplained) at interfaces of ``group_ids``."""
    ifaces = interfaces_of(analysis, group_ids)
    return df if ifaces is None else df[df["interface_id"].isin(ifaces)].reset_index(drop=True)


def top_talkers(analysis: Analysis, n: int = 20, group_ids=None) -> pd.DataFrame:
    """The peers with the most accepted conversations: connections, interfaces, ports, bytes, last seen.

    With ``group_ids``, only the conversations at interfaces that carry those groups count.
    """
    n = _how_many(n, "n")
    ifaces = interfaces_of(analysis, group_ids)
    where = "" if ifaces is None else "AND list_contains($ifaces, interface_id)"
    df = analysis.con.sql(f"""
        SELECT peer_addr AS peer, count(*) AS connections, count(DISTINCT interface_id) AS interfaces,
               string_agg(DISTINCT CAST(port AS VARCHAR), ',') AS ports,
               sum(bytes)::BIGINT AS bytes, sum(packets)::BIGINT AS packets, max(last_ms) AS last_ms
        FROM classified WHERE accepted {where}
        GROUP BY peer_addr ORDER BY connections DESC, bytes DESC, peer LIMIT {n}
    """, params=None if ifaces is None else {"ifaces": sorted(ifaces)}).df()
    df["ports"] = df["ports"].fillna("").map(_sorted_ports)
    df["last_seen"] = ms_to_utc(df.pop("last_ms"))
    return df


def peers(analysis: Analysis, rule_id: str | None = None, limit: int = 200) -> pd.DataFrame:
    """The peers and ports behind each rule: one row per (rule, peer, port), the busiest ``limit`` per rule.

    ``attrs["total"]`` is the number of rows before the cut, for an honest "showing n of N", and
    ``attrs["cut"]`` maps each rule that had more than ``limit`` rows to its number of rows (`peers_caption`).
    """
    limit = _how_many(limit, "limit")
    where = "" if rule_id is None else "AND cr.rule_id = $rule"
    rel = analysis.con.sql(f"""
        WITH x AS (
            SELECT cr.rule_id, r.group_id, c.peer_addr AS peer, c.port, count(*) AS connections,
                   max({evidence_rank_sql("c.evidence")}) AS rank,
                   sum(c.bytes)::BIGINT AS bytes, sum(c.packets)::BIGINT AS packets,
                   min(c.first_ms) AS first_ms, max(c.last_ms) AS last_ms
            FROM conversation_rules cr JOIN classified c USING (conversation_id) JOIN rules r USING (rule_id)
            WHERE c.accepted {where}
            GROUP BY ALL
        )
        SELECT * EXCLUDE (n), count(*) OVER () AS total, count(*) OVER (PARTITION BY rule_id) AS of_rule FROM (
            SELECT *, row_number() OVER (PARTITION BY rule_id ORDER BY connections DESC, bytes DESC, peer) AS n
            FROM x
        ) QUALIFY n <= {limit}
        ORDER BY rule_id, connections DESC, bytes DESC, peer
    """, params={"rule": rule_id} if rule_id is not None else None)
    df = rel.df()
    total = int(df["total"].iloc[0]) if len(df) else 0
    per_rule = df.drop_duplicates("rule_id").set_index("rule_id")["of_rule"]
    cut = {rid: int(n) for rid, n in per_rule.items() if n > limit}
    df["evidence"] = df.pop("rank").map(EVIDENCE_BY_RANK)
    df["port"] = df["port"].astype("Int64")
    df["first_seen"] = ms_to_utc(df.pop("first_ms"))
    df["last_seen"] = ms_to_utc(df.pop("last_ms"))
    df = df[["rule_id", "group_id", "peer", "port", "connections", "evidence", "bytes", "packets",
             "first_seen", "last_seen"]]
    df.attrs["total"] = total
    df.attrs["cut"] = cut
    df.attrs["limit"] = limit
    return df


def peers_caption(df: pd.DataFrame, caption: str = "Peers and ports per rule") -> str:
    """A caption for (a part of) `peers` that says which of its rules were cut to the busiest rows, and from how many.

    The table's own row count cannot say it: each rule is cut apart, and a filtered part keeps all its rows.
    """
    cut = {rid: n for rid, n in df.attrs.get("cut", {}).items() if rid in set(df["rule_id"])}
    if not cut:
        return f"{caption}: every peer and port"
    limit = df.attrs.get("limit")
    named = ", ".join(f"{rid} {limit:,} of {n:,}" for rid, n in sorted(cut.items())[:3])
    more = f" and {len(cut) - 3:,} more rules" if len(cut) > 3 else ""
    return f"{caption}: the busiest {limit:,} of each rule; cut: {named}{more}"


def conversations_of(analysis: Analysis, interface_id: str | None = None, peer: str | None = None,
                     limit: int = 5000) -> pd.DataFrame:
    """One interface's or one peer's accepted and rejected conversations, and the rules that let them through.

    ``peer`` may be an address or a CIDR block. Accepted conversations come first, busiest first; at most
    ``limit`` rows, with ``attrs["total"]`` the number before the cut. Raises `SgauditError` when neither is
    given or the peer is not an address.
    """
    if not interface_id and not peer:
        raise SgauditError("give an interface_id (eni-…) or a peer address to investigate")
    limit = _how_many(limit, "limit")
    clauses, params = [], {}
    if interface_id:
        _check_interface(analysis, interface_id)
        clauses.append("c.interface_id = $iface")
        params["iface"] = interface_id
    if peer:
        try:
            net = ipaddress.ip_network(peer, strict=False)
        except ValueError as exc:
            raise SgauditError(f"peer {peer!r} is not an IPv4 or IPv6 address or CIDR block") from exc
        # As text, cast in SQL: DuckDB binds a Python int as a signed 128-bit number, which the top half of
        # the IPv6 space (::/0 reaches 2**128 - 1) does not fit.
        clauses.append("c.family = $fam AND c.peer_num BETWEEN CAST($lo AS UHUGEINT) AND CAST($hi AS UHUGEINT)")
        params.update(fam=net.version, lo=str(int(net.network_address)), hi=str(int(net.broadcast_address)))
    df = analysis.con.sql(f"""
        SELECT c.interface_id, c.direction, c.protocol, c.local_addr AS local_address, c.local_port,
               c.peer_addr AS peer, c.peer_port, c.port, c.evidence, c.accepted,
               c.acc_p + c.acc_l AS accepted_records, c.rej_p + c.rej_l AS rejected_records,
               c.bytes, c.packets, least(c.first_ms, c.rej_first_ms) AS first_ms,
               greatest(c.last_ms, c.rej_last_ms) AS last_ms,
               coalesce(r.rules, '') AS rules, count(*) OVER () AS total
        FROM classified c
        LEFT JOIN conversation_rule_list r USING (conversation_id)
        WHERE {' AND '.join(clauses)}
        ORDER BY accepted DESC, bytes DESC, interface_id, peer, port
        LIMIT {limit}
    """, params=params).df()
    totals = df.pop("total")  # the same columns whether or not any row was found
    total = int(totals.iloc[0]) if len(df) else 0
    df["evidence"] = [e if a else "rejected" for e, a in zip(df["evidence"], df["accepted"], strict=True)]
    df["rules"] = [r if a else "" for r, a in zip(df["rules"], df["accepted"], strict=True)]
    df["explained"] = df["rules"] != ""
    df["first_seen"] = ms_to_utc(df.pop("first_ms"))
    df["last_seen"] = ms_to_utc(df.pop("last_ms"))
    df = df.drop(columns=["accepted"])
    df.attrs["total"] = total
    return df


def _check_interface(analysis: Analysis, interface_id: str) -> None:
    """Fail on an interface that neither the snapshot nor the logs name.

    A typo, or the investigate notebook's default (the sample account's interface) against your own logs,
    would otherwise give an empty investigation.
    """
    cov = analysis.coverage
    if interface_id in set(cov["interface_id"]):
        return
    close = difflib.get_close_matches(interface_id, list(cov["interface_id"]), n=1)
    busiest = cov.sort_values(["records", "interface_id"], ascending=[False, True], kind="stable").head(3)
    some = ", ".join(f"{i} ({n:,} records)" for i, n in zip(busiest["interface_id"], busiest["records"],
                                                             strict=True))
    raise SgauditError(f"interface_id {interface_id!r} is neither in the snapshot nor in the flow logs"
                       + (f" (closest: {close[0]})" if close else "")
                       + (f"; the interfaces with the most records: {some}" if some else "")
                       + "; check the ID (eni-…), or investigate a peer alone with interface_id empty")


def rules_behind(analysis: Analysis, found: pd.DataFrame) -> pd.DataFrame:
    """The rules (with context, as `rules`) that let the conversations of ``found`` through.

    ``found`` is a frame with a ``rules`` column of space-separated rule IDs (`conversations_of`).
    """
    ids = {r for cell in found["rules"] for r in str(cell).split()}
    out = rules(analysis)
    return out[out["rule_id"].isin(ids)].reset_index(drop=True)


def overview(analysis: Analysis) -> pd.DataFrame:
    """The window and what was and was not observed in it, as (item, value) rows for the report's first view."""
    lo, hi = analysis.window
    cov = analysis.coverage
    u = analysis.usage
    snap = cov[cov["in_snapshot"]]
    q = analysis.quality.set_index("bucket")["records"]
    groups = analysis.inventory.groups
    observed_groups = set(u.loc[~u["status"].isin(["unobserved", "unattached"]), "group_id"])
    rows = [
        # Which side is whose: a window the user gave is [start, end); one taken from the records runs from
        # the first record's start to the last one's end, both included.
        (_window_label("start", analysis.bounds_ms[0], "first record's start"), iso_time(lo)),
        (_window_label("end", analysis.bounds_ms[1], "last record's end", given="excluded"), iso_time(hi)),
        ("window length", duration(hi - lo) if lo is not None and hi is not None else "no records"),
        # Which accounts and VPCs were audited: an auditor holding only the report can check its scope.
        ("accounts in the snapshot", _some(sorted(set(groups["owner_id"].dropna()) - {""}))),
        ("VPCs in the snapshot", f"{len(set(groups['vpc_id'].dropna()) - {''}):,}"),
        ("flow logs", _sources(analysis.call)),
        ("inventory snapshot", analysis.call.get("inventory") or "-"),
        ("analysed (UTC)", f"{iso_time(analysis.call.get('started'))} by sgaudit {__version__}"),
        ("flow-log files read", f"{len(analysis.files):,}"),
        ("records read", f"{int(q.get('total', 0)):,}"),
        ("records in conversations", f"{int(q.get('conversation', 0)):,}"),
        ("interfaces in the snapshot", f"{len(snap):,}"),
        ("… observed in the window", f"{int(snap['observed'].sum()):,}"),
        ("… not observed (no flow logs: no evidence either way)", f"{int((~snap['observed']).sum()):,}"),
        ("interfaces in the logs but not in the snapshot", f"{int((~cov['in_snapshot']).sum()):,}"),
        ("security groups", f"{len(groups):,}"),
        ("… with an observed interface", f"{len(observed_groups):,}"),
        ("rules", f"{len(u):,}"),
    ]
    # An "unused" rule whose referenced group or prefix list is not in the snapshot could match nothing:
    # its use is unknown, and the report's removal candidates leave it out, so it is counted apart.
    shown, order = shown_statuses(rules(analysis))
    for status in order:
        rows.append((f"… {status}", f"{int((shown == status).sum()):,}"))
    rows.append(("accepted conversations no rule explains", f"{len(analysis.unexplained):,}"))
    return pd.DataFrame(rows, columns=["item", "value"])


def _window_label(side: str, given_ms: int | None, taken: str, given: str = "included") -> str:
    """``window end (UTC, excluded)`` for a bound the user gave, ``window end (UTC, the last record's end)``."""
    return f"window {side} (UTC, {given if given_ms is not None else 'the ' + taken})"


#: How `verdict` words each status (as `shown_statuses` names them) in its sentence.
_IN_WORDS = {"attempted": "only attempted", PEERS_UNKNOWN: "of unknown use (peers not in the snapshot)",
             "unobserved": "unobserved (no flow logs from their interfaces)", "unattached": "in groups on no interface"}


def verdict(analysis: Analysis, found: pd.DataFrame, group_ids=None, timeline=None) -> list[str]:
    """The report's conclusion, one sentence each: the rules by status, the findings, what no rule explains.

    Parameters
    ----------
    analysis : Analysis
    found : pandas.DataFrame
        The findings shown in the report (`sgaudit.findings.findings`, filtered as the report is).
    group_ids : list of str, optional
        The report's group filter: the rules and the unexplained conversations are those of these groups.
    timeline : sgaudit.timeline.Timeline, optional
        The whole analysis' timeline: when given, stretches without any traffic (`quiet_stretches`) are
        said right after the window, since they shorten the time in which a rule could be seen used.
    """
    from .findings import SEVERITIES, counts

    rules_ = filter_rules(rules(analysis), group_ids=group_ids)
    shown, order = shown_statuses(rules_)
    n = shown.value_counts()
    statuses = [f"{int(n[s]):,} {_IN_WORDS.get(s, s)}" for s in order if s in n.index]
    lo, hi = analysis.window
    window = (f"over the {duration(hi - lo)} from {iso_time(lo)} to {iso_time(hi)}" if lo is not None and hi is not None
              else "with no flow-log record in the window")
    groups = rules_["group_id"].nunique()
    out = [f"{len(rules_):,} rule{'s' * (len(rules_) != 1)} in {groups:,} security group{'s' * (groups != 1)} "
           f"{window}: " + (", ".join(statuses) if statuses else "none") + "."]
    quiet = quiet_stretches(timeline) if timeline is not None else []
    if quiet:
        total = sum((b - a for a, b in quiet), pd.Timedelta(0))
        out.append(f"For {duration(total)} of the window no interface has any traffic (logs missing, or "
                   "everything idle: see the note below), so rules had less time to be seen used.")
    if skipped := skipped_text(analysis):
        out.append(skipped)
    candidates = int(n.get("unused", 0)) + int(n.get("attempted", 0))
    if candidates:
        out.append(f"{candidates:,} {'rule is a candidate' if candidates == 1 else 'rules are candidates'} for "
                   "removal: unused or only attempted in this window.")
    out.append(counts(found) + ".")
    # The most severe findings by name: the first thing an auditor acts on (findings come most severe first).
    worst = found[found["severity"].isin(SEVERITIES[:2])]  # critical and high
    for f in worst.head(3).itertuples(index=False):
        of = f"rule {f.rule_id} of {f.group_name or f.group_id}" if f.rule_id else (f.group_name or f.group_id)
        out.append(f"{str(f.severity).capitalize()}: {f.title}" + (f", {of}." if of else "."))
    if len(worst) > 3:
        out.append(f"{len(worst) - 3:,} more critical or high.")
    unexplained = for_groups(analysis.unexplained, analysis, group_ids)
    if len(unexplained):
        out.append(f"{len(unexplained):,} accepted conversation{'s' * (len(unexplained) != 1)} no rule explains.")
    elif analysis.con.sql("SELECT count(*) FROM classified WHERE accepted").fetchall()[0][0]:
        out.append("Every accepted conversation is allowed by a rule of the snapshot.")
    else:
        # "Every … is allowed" would be true of none: say that nothing was there to check.
        out.append("No accepted conversation at an interface of the snapshot, so no traffic was checked "
                   "against its rules.")
    return out


def _sources(call: dict) -> str:
    """The flow logs as given (URIs, absolute paths), or the Athena table they were read from."""
    options = call.get("engine_options") or {}
    if call.get("engine") == "athena":
        return f"Athena table {options.get('database')}.{options.get('table')}"
    return _some([str(p) for p in call.get("flow_logs_shown", call.get("flow_logs")) or []], shown=3)


def _some(values: list[str], shown: int = 5) -> str:
    """``a, b, c and 4 more``; ``-`` for none."""
    if not values:
        return "-"
    return ", ".join(values[:shown]) + (f" and {len(values) - shown:,} more" if len(values) > shown else "")


def skipped_text(analysis: Analysis) -> str:
    """A sentence on SKIPDATA records, or "" when there are none.

    SKIPDATA is AWS saying it dropped an interval's records at an interface (capacity, an internal error).
    SPEC counts the interface observed, so its groups' rules can be `unused` on traffic that was never
    logged: the report's conclusion and the plan's limits say so. (One such record is no run that "says
    nothing", so it is not one of the `warnings`.)
    """
    skipped = int(analysis.quality.set_index("bucket")["records"].get("skipdata", 0))
    if not skipped:
        return ""
    where = analysis.con.sql("SELECT count(DISTINCT interface_id) FROM buckets WHERE bucket = 'skipdata'"
                             ).fetchall()[0][0]
    return (f"AWS skipped records at {where:,} interface{'s' * (where != 1)} ({skipped:,} SKIPDATA "
            f"record{'s' * (skipped != 1)}): the traffic of those intervals is in no result, so rules of their "
            "groups may look unused or less used than they were.")


def warnings(analysis: Analysis) -> list[str]:
    """What makes a result say nothing, one sentence each; empty when the run is sound.

    Not errors (an empty delivery or a quiet window is possible), but a scheduled report built on one
    looks like a real "nothing observed" report: the CLI prints these and every notebook shows them.
    """
    q = analysis.quality.set_index("bucket")["records"]
    total, malformed, outside = (int(q.get(b, 0)) for b in ("total", "malformed", "outside_window"))
    cov = analysis.coverage
    snap = cov[cov["in_snapshot"]]
    out = []
    if total == 0:
        out.append("no flow-log record was read (the files are empty or hold only header lines): nothing was "
                   "observed, so every rule is unobserved or unattached.")
    elif malformed == total:
        out.append(f"every one of the {total:,} records read is malformed (the problems table lists them): check "
                   "--format for files without a header line, or that the files are VPC flow logs.")
    elif outside and outside + malformed == total:
        lo, hi = analysis.con.sql("SELECT min(first_ms), max(last_ms) FROM buckets WHERE bucket = 'outside_window'"
                                  ).fetchall()[0]
        span = "" if lo is None else (f" (they span {iso_time(pd.Timestamp(lo, unit='ms', tz='UTC'))} to "
                                      f"{iso_time(pd.Timestamp(hi, unit='ms', tz='UTC'))})")
        out.append(f"none of the {total - malformed:,} records read is in the window{span}: every rule is "
                   "unobserved or unattached; check --start and --end against the logs.")
    elif not len(snap):
        n = int(q.get("interface_not_in_snapshot", 0))
        records = f" and the {n:,} records, at interfaces not in it, count for coverage only" if n else ""
        out.append("the snapshot holds no network interface (network-interfaces.json lists none), so every "
                   f"rule is unattached{records}: was it taken in the account and region of the flow logs?")
    elif not snap["observed"].any():
        if (~cov["in_snapshot"]).any():
            # Not an error (SPEC: such records count for coverage only), but almost always a mix-up.
            out.append("no interface of the snapshot is in these logs: is the snapshot of another account or "
                       "region than the flow logs?")
        else:
            out.append("no interface of the snapshot was observed in the window: every rule is unobserved or "
                       "unattached.")
    if 0 < malformed < total and malformed >= MALFORMED_SHARE * total:
        # AWS writes no malformed record: a share like this is a wrong --format or damaged files, and the
        # traffic of those records is missing from every result (a plan would remove rules it used).
        out.append(f"{malformed:,} of the {total:,} records read ({malformed / total:.0%}) are malformed and left "
                   "out (the problems table lists them): rules their traffic used may look unused; check --format "
                   "for files without a header line, or the files themselves.")
    return out


#: The share of malformed records above which `warnings` says so: AWS's own logs have none.
MALFORMED_SHARE = 0.01

#: A stretch without any traffic, from any interface, is named (`quiet_stretches`) when it lasts at least
#: this long and this share of the window. Flow logs aggregate over up to 10 minutes; shorter silences are
#: ordinary.
QUIET_MIN = pd.Timedelta(minutes=15)
QUIET_MIN_SHARE = 0.05


def quiet_stretches(timeline) -> list[tuple[pd.Timestamp, pd.Timestamp]]:
    """Stretches of the window in which no interface has any traffic, accepted or rejected: ``[(start, end)]``.

    From a `Timeline` (its buckets hold the records that start in them, so a long connection logged before
    and after a hole does not hide it), a selection of one included: its ``active`` buckets are the whole
    analysis'. Such a stretch is flow logs missing (not delivered, not copied, a flow log stopped), or every
    interface idle: either way "unused" and "not seen" cover less time than the window says. Only
    stretches of `QUIET_MIN` and `QUIET_MIN_SHARE` of the window are named.
    """
    lo, hi = timeline.window
    if lo is None or hi is None or pd.isna(lo) or pd.isna(hi) or hi <= lo or not len(timeline.times):
        return []
    active = timeline.active
    out, start = [], None
    for t in [*timeline.times, None]:
        if t is not None and t not in active:
            # The first bucket starts on the grid, before a window that does not (--start 13:07, 5 min
            # buckets: 13:05): the stretch starts no earlier than the window, as it ends no later.
            start = max(lo, t) if start is None else start
            continue
        if start is not None:
            end = min(hi, t) if t is not None else hi
            if end - start >= QUIET_MIN and end - start >= QUIET_MIN_SHARE * (hi - lo):
                out.append((start, end))
            start = None
    return out


def quiet_text(stretches: list[tuple[pd.Timestamp, pd.Timestamp]], window: tuple) -> str:
    """One sentence naming `quiet_stretches`, or "" when there are none."""
    if not stretches:
        return ""
    lo, hi = window
    shown = "; ".join(f"{iso_time(a)} to {iso_time(b)} ({duration(b - a)})" for a, b in stretches[:3])
    more = f" and {len(stretches) - 3} more" if len(stretches) > 3 else ""
    total = sum((b - a for a, b in stretches), pd.Timedelta(0))
    return (f"no interface has any traffic, accepted or rejected, from {shown}{more}: {duration(total)} of the "
            f"{duration(hi - lo)} window. Either the flow logs of that time are missing (not delivered or not "
            "copied) or every interface was idle; rules look unused over less time than the window says.")


def duration(td: pd.Timedelta) -> str:
    """A window length for a sentence: ``4 h 59 min``, ``2 d 3 h``, ``45 s``."""
    secs = int(td.total_seconds())
    if secs < 60:
        return f"{td.total_seconds():.3g} s"  # a window of one millisecond record: 0.5 s, not 0 s
    days, rest = divmod(secs, 86400)
    hours, rest = divmod(rest, 3600)
    minutes = rest // 60
    parts = [f"{days} d"] * bool(days) + [f"{hours} h"] * bool(hours) + [f"{minutes} min"] * bool(minutes)
    return " ".join(parts[:2])  # two units say enough: "2 d 3 h", not "2 d 3 h 4 min"


def _sorted_ports(ports: str) -> str:
    return ",".join(sorted((p for p in ports.split(",") if p), key=int))
