"""IP addresses as numbers, so that CIDR membership is a range test any SQL engine can run.

IPv4 addresses become their 32-bit value and IPv6 addresses their 128-bit value (DuckDB UHUGEINT),
always beside a family (4 or 6) so that the two never cross: ``0.0.0.0/0`` is the range 0..2**32-1 of
family 4 and does not contain an IPv6 peer whose number happens to be small.
"""

from __future__ import annotations

import ipaddress

import duckdb
import pandas as pd

# IPv4 parsing in SQL: it runs over every distinct address and must be vectorised. An octet that is not
# 0..255 makes TRY_CAST return NULL, and so does the address: it is then reported as malformed. So is an
# octet with a leading zero ("010"), as Python's `ipaddress` has it: AWS never writes one, and read as a
# number it would be a second spelling of one address (two conversations with one peer).
IPV4_MACRO = """
CREATE OR REPLACE MACRO ipv4_num(a) AS (
    CASE WHEN regexp_full_match(a, '(0|[1-9][0-9]{0,2})(\\.(0|[1-9][0-9]{0,2})){3}') THEN
        TRY_CAST(split_part(a, '.', 1) AS UTINYINT)::UHUGEINT * 16777216
        + TRY_CAST(split_part(a, '.', 2) AS UTINYINT)::UHUGEINT * 65536
        + TRY_CAST(split_part(a, '.', 3) AS UTINYINT)::UHUGEINT * 256
        + TRY_CAST(split_part(a, '.', 4) AS UTINYINT)::UHUGEINT
    END)
"""


def cidr_range(cidr: str) -> tuple[int, int, int]:
    """``(family, first, last)`` of a CIDR block, as numbers.

    Host bits are ignored (``10.0.0.5/8`` is ``10.0.0.0/8``), as AWS does when it stores a rule.
    """
    net = ipaddress.ip_network(cidr.strip(), strict=False)
    return net.version, int(net.network_address), int(net.broadcast_address)


def build_address_table(con: duckdb.DuckDBPyConnection, source_sql: str, table: str = "addr") -> None:
    """Create ``table(addr, family, num)`` for every distinct address in ``source_sql`` (one column ``a``).

    IPv4 is converted in SQL (`IPV4_MACRO`), IPv6 by `build_ipv6_table`. An address that parses as
    neither gets NULL family and number.
    """
    build_ipv6_table(con, f"SELECT a FROM ({source_sql}) WHERE a LIKE '%:%'", table=f"{table}_v6")
    con.execute(f"""
        CREATE OR REPLACE TABLE {table} AS
        SELECT d.a AS addr,
               CASE WHEN ipv4_num(d.a) IS NOT NULL THEN 4 ELSE v.family END::TINYINT AS family,
               coalesce(ipv4_num(d.a), v.num) AS num
        FROM (SELECT DISTINCT a FROM ({source_sql}) WHERE a IS NOT NULL) d
        LEFT JOIN {table}_v6 v ON v.addr = d.a
    """)


def build_ipv6_table(con: duckdb.DuckDBPyConnection, source_sql: str, table: str = "addr") -> None:
    """Create ``table(addr, family, num)`` for the distinct IPv6 addresses of ``source_sql`` (column ``a``).

    IPv4 needs no table: `IPV4_MACRO` converts it inline. IPv6 is converted with Python's `ipaddress`,
    once per distinct address; one that does not parse is left out, and so reads as malformed.
    """
    con.execute(IPV4_MACRO)
    v6 = con.sql(f"SELECT DISTINCT a FROM ({source_sql}) WHERE a IS NOT NULL").fetchall()
    rows = []
    for (a,) in v6:
        try:
            rows.append((a, str(int(ipaddress.IPv6Address(a)))))
        except ValueError:
            pass
    con.register("_v6_nums", pd.DataFrame(rows, columns=["addr", "num"], dtype=str))
    con.execute(f"""
        CREATE OR REPLACE TABLE {table} AS
        SELECT addr, CAST(6 AS TINYINT) AS family, CAST(num AS UHUGEINT) AS num FROM _v6_nums
    """)
    con.unregister("_v6_nums")


def build_respelled_table(con: duckdb.DuckDBPyConnection, table: str = "addr", out: str = "peer_canon") -> int:
    """Create ``out(addr, canon)`` for the addresses of ``table`` written in more than one way.

    ``canon`` is the spelling RFC 5952 gives (``2001:db8::1`` for ``2001:DB8:0:0:0:0:0:1`` and
    ``2001:db8:0::1``). Usually there are none, and finding that costs one grouping of ``table`` by
    number. The canonical spelling is added to ``table`` when the input never wrote it, so that a peer
    replaced by its ``canon`` can still be looked up there.

    Returns
    -------
    int
        How many spellings ``out`` holds.
    """
    multi = con.sql(f"SELECT addr, CAST(num AS VARCHAR) FROM {table} "
                    f"WHERE num IN (SELECT num FROM {table} GROUP BY num HAVING count(*) > 1)").fetchall()
    rows = [(a, str(ipaddress.IPv6Address(int(n))), n) for a, n in multi]
    con.register("_respelled", pd.DataFrame(rows, columns=["addr", "canon", "num"], dtype=str))
    con.execute(f"CREATE OR REPLACE TABLE {out} AS SELECT addr, canon FROM _respelled")
    con.execute(f"""
        INSERT INTO {table}
        SELECT DISTINCT canon, CAST(6 AS TINYINT), CAST(num AS UHUGEINT) FROM _respelled
        WHERE canon NOT IN (SELECT addr FROM {table})
    """)
    con.unregister("_respelled")
    return len(rows)
