"""The VPC Flow Logs field table, and parsing of log-format strings.

One literal table, in AWS's own field names, says for every field the version that introduced it and the
type sgaudit reads it as. Everything else (the reader's column types, Parquet column names, the error
listing the known fields) is derived from it.

Sources: AWS "Flow log records" (versions 2-7), the transit-gateway page (version 6) and later copies of
the live page (versions 8-11, not confirmed on an AWS page: see ``../shared/AWS-FACTS.md``).
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass

from .errors import FlowLogFormatError


@dataclass(frozen=True)
class Field:
    """One flow-log field.

    Attributes
    ----------
    name : str
        AWS's name, e.g. ``tcp-flags``.
    version : int
        The flow-log version that introduced it.
    sql_type : str
        The DuckDB type sgaudit reads it as. Text delivery has every field as a string; the reader casts,
        and a value that does not fit (``99999`` as a port) is a malformed record.
    """

    name: str
    version: int
    sql_type: str

    @property
    def column(self) -> str:
        """The column name used inside sgaudit and by Athena's Parquet tables (``tcp_flags``)."""
        return self.name.replace("-", "_")


_V = "VARCHAR"
# Ports are 0..65535; protocol numbers 0..255; tcp-flags are a small bitmask (FIN 1, SYN 2, RST 4,
# SYN-ACK 18, possibly PSH 8/ACK 16/URG 32 in older documentation), so a SMALLINT holds any OR of them.
FIELDS: tuple[Field, ...] = (
    Field("version", 2, "SMALLINT"),
    Field("account-id", 2, _V),
    Field("interface-id", 2, _V),
    Field("srcaddr", 2, _V),
    Field("dstaddr", 2, _V),
    Field("srcport", 2, "USMALLINT"),
    Field("dstport", 2, "USMALLINT"),
    Field("protocol", 2, "UTINYINT"),
    Field("packets", 2, "BIGINT"),
    Field("bytes", 2, "BIGINT"),
    Field("start", 2, "BIGINT"),
    Field("end", 2, "BIGINT"),
    Field("action", 2, _V),
    Field("log-status", 2, _V),
    Field("vpc-id", 3, _V),
    Field("subnet-id", 3, _V),
    Field("instance-id", 3, _V),
    Field("tcp-flags", 3, "SMALLINT"),
    Field("type", 3, _V),
    Field("pkt-srcaddr", 3, _V),
    Field("pkt-dstaddr", 3, _V),
    Field("region", 4, _V),
    Field("az-id", 4, _V),
    Field("sublocation-type", 4, _V),
    Field("sublocation-id", 4, _V),
    Field("pkt-src-aws-service", 5, _V),
    Field("pkt-dst-aws-service", 5, _V),
    Field("flow-direction", 5, _V),
    Field("traffic-path", 5, "SMALLINT"),
    # Version 6 fields exist only in transit gateway flow logs.
    Field("resource-type", 6, _V),
    Field("tgw-id", 6, _V),
    Field("tgw-attachment-id", 6, _V),
    Field("tgw-src-vpc-account-id", 6, _V),
    Field("tgw-dst-vpc-account-id", 6, _V),
    Field("tgw-src-vpc-id", 6, _V),
    Field("tgw-dst-vpc-id", 6, _V),
    Field("tgw-src-subnet-id", 6, _V),
    Field("tgw-dst-subnet-id", 6, _V),
    Field("tgw-src-eni", 6, _V),
    Field("tgw-dst-eni", 6, _V),
    Field("tgw-src-az-id", 6, _V),
    Field("tgw-dst-az-id", 6, _V),
    Field("tgw-pair-attachment-id", 6, _V),
    Field("packets-lost-no-route", 6, "BIGINT"),
    Field("packets-lost-blackhole", 6, "BIGINT"),
    Field("packets-lost-mtu-exceeded", 6, "BIGINT"),
    Field("packets-lost-ttl-expired", 6, "BIGINT"),
    Field("ecs-cluster-arn", 7, _V),
    Field("ecs-cluster-name", 7, _V),
    Field("ecs-container-instance-arn", 7, _V),
    Field("ecs-container-instance-id", 7, _V),
    Field("ecs-container-id", 7, _V),
    Field("ecs-second-container-id", 7, _V),
    Field("ecs-service-name", 7, _V),
    Field("ecs-task-definition-arn", 7, _V),
    Field("ecs-task-arn", 7, _V),
    Field("ecs-task-id", 7, _V),
    # Versions 8-11 are read as text: sgaudit does not use them, it only has to accept them.
    Field("reject-reason", 8, _V),
    Field("resource-id", 9, _V),
    Field("encryption-status", 10, _V),
    Field("instance-tag", 11, _V),
    Field("instance-tag-2", 11, _V),
    Field("interface-tag", 11, _V),
    Field("interface-tag-2", 11, _V),
    Field("asg-tag", 11, _V),
    Field("asg-tag-2", 11, _V),
    Field("interface-type", 11, _V),
    Field("next-hop-interface-id", 11, _V),
    Field("next-hop-subnet-id", 11, _V),
    Field("next-hop-az-id", 11, _V),
    Field("next-hop-vpc-id", 11, _V),
    Field("next-hop-interface-type", 11, _V),
)

BY_NAME: dict[str, Field] = {f.name: f for f in FIELDS}
BY_COLUMN: dict[str, Field] = {f.column: f for f in FIELDS}

#: The default format, which AWS does not let anyone change (version 2, all v2 fields in table order).
DEFAULT_FORMAT: tuple[str, ...] = tuple(f.name for f in FIELDS if f.version == 2)

#: What sgaudit cannot work without: who (interface, addresses, ports, protocol), what (action) and when.
REQUIRED: tuple[str, ...] = (
    "interface-id", "srcaddr", "dstaddr", "srcport", "dstport", "protocol", "action", "start", "end",
)

#: The fields the reduction reads; every other field is parsed for validation and then ignored.
USED: tuple[str, ...] = REQUIRED + ("packets", "bytes", "log-status", "tcp-flags", "flow-direction")


def _unknown(name: str, where: str) -> FlowLogFormatError:
    close = difflib.get_close_matches(name, BY_NAME, n=1)
    hint = f" Did you mean {close[0]!r}?" if close else ""
    known = " ".join(f.name for f in FIELDS)
    return FlowLogFormatError(
        f"{where}: unknown flow-log field {name!r}.{hint} Known fields (versions 2-11): {known}"
    )


def parse_format(text: str, where: str = "--format") -> tuple[str, ...]:
    """Parse a log-format string into field names.

    Accepts AWS's ``LogFormat`` form (``${version} ${srcaddr} ...``), a plain header line
    (``version srcaddr ...``) and Athena-style underscore names (``tcp_flags``).

    Parameters
    ----------
    text : str
        The format string or header line.
    where : str
        Where the text came from, for error messages (a file name, ``--format``).

    Returns
    -------
    tuple of str
        AWS field names in the order of the text.

    Raises
    ------
    FlowLogFormatError
        For an empty format, an unknown field (naming the closest known one and listing all) or a
        repeated field.
    """
    tokens = re.sub(r"\$\{([^}]*)\}", r"\1", text).split()
    if not tokens:
        raise FlowLogFormatError(f"{where}: the log format is empty; give field names such as "
                                 f"{' '.join(DEFAULT_FORMAT)!r}")
    names = []
    for tok in tokens:
        name = tok if tok in BY_NAME else BY_COLUMN[tok].name if tok in BY_COLUMN else None
        if name is None:
            raise _unknown(tok, where)
        if name in names:
            raise FlowLogFormatError(f"{where}: field {name!r} appears twice in the log format")
        names.append(name)
    return tuple(names)


def check_required(names: tuple[str, ...], where: str) -> None:
    """Raise `FlowLogFormatError` listing every required field missing from a format, all at once."""
    missing = [n for n in REQUIRED if n not in names]
    if missing and any(n.startswith("tgw-") for n in names) and "interface-id" in missing:
        # A transit gateway's flow log: no format of it names an interface or a security group's verdict.
        raise FlowLogFormatError(
            f"{where}: a transit gateway flow log (it has {', '.join([n for n in names if n.startswith('tgw-')][:2])}"
            f"… and no {', '.join(missing)}): its records name no network interface, so they cannot be "
            "attributed to security group rules. Give sgaudit the VPC flow logs of the VPCs behind the "
            "transit gateway (aws ec2 create-flow-logs --resource-type VPC) instead."
        )
    if missing:
        raise FlowLogFormatError(
            f"{where}: the log format lacks {', '.join(missing)}; sgaudit needs {' '.join(REQUIRED)} "
            "to attribute traffic to rules. Recreate the flow log with a custom format that includes them "
            "(see the README's recommended format)."
        )


def looks_like_header(line: str) -> bool:
    """Whether the first line of a text file is a header rather than a record.

    A header is a line whose tokens are mostly field names. "Mostly", not "all": a header that names a
    field sgaudit does not know must still be recognised as a header, so that the user gets an error
    naming that field instead of every record reported as malformed.
    """
    tokens = line.split()
    known = sum(t in BY_NAME or t in BY_COLUMN for t in tokens)
    return bool(tokens) and known * 2 >= len(tokens)
