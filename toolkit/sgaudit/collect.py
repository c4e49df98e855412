"""Take the inventory snapshot from AWS with boto3: the same folder the AWS CLI commands of the README write.

``snapshot`` calls only read-only EC2 operations (plus ``sts:GetCallerIdentity`` to name account folders) and
writes, per region::

    security-group-rules.json        {"SecurityGroupRules": [...]}  describe-security-group-rules
    security-groups.json             {"SecurityGroups": [...]}      describe-security-groups
    network-interfaces.json          {"NetworkInterfaces": [...]}   describe-network-interfaces
    managed-prefix-lists.json        {"PrefixLists": [...]}         describe-managed-prefix-lists (customer + AWS)
    prefix-list-entries/<pl-id>.json {"Entries": [...]}             get-managed-prefix-list-entries
    flow-logs.json                   {"FlowLogs": [...]}            describe-flow-logs (each log's LogFormat)

Every page of a paginated call is concatenated under its top key and the file is written as the AWS CLI
prints it (4-space JSON, timestamps in ISO 8601), so a snapshot taken by hand and one taken by sgaudit are
interchangeable. One region is written straight into the output folder; several regions (or accounts) into
``<account-id>/<region>/`` subfolders, which `sgaudit.inventory.load` reads as one snapshot.

`ALLOWED_ACTIONS` is the complete list of IAM actions sgaudit may call: `iam_policy` (reads only, all
sgaudit needs) and `athena_policy` (what ``--engine athena`` adds) are the policies of ``docs/aws.md``.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path
from typing import Any

from .errors import SgauditError

#: The IAM actions sgaudit calls, all of them reads: the inventory snapshot (``collect``) and flow logs
#: read from S3 and CloudWatch Logs. This is the whole policy unless the heavy step runs on Athena.
READ_ONLY_ACTIONS: tuple[str, ...] = (
    # the inventory snapshot (sgaudit collect)
    "ec2:DescribeSecurityGroupRules",
    "ec2:DescribeSecurityGroups",
    "ec2:DescribeNetworkInterfaces",
    "ec2:DescribeManagedPrefixLists",
    "ec2:GetManagedPrefixListEntries",
    "ec2:DescribeFlowLogs",
    "ec2:DescribeRegions",
    "sts:GetCallerIdentity",
    # flow logs delivered to S3
    "s3:ListBucket",
    "s3:GetObject",
    # flow logs delivered to CloudWatch Logs
    "logs:FilterLogEvents",
)

#: What ``--engine athena`` adds, in a policy statement of its own: Athena's query API (starting and
#: stopping a query is what IAM calls a write, though it changes no resource of the account), the Glue
#: Data Catalog Athena reads the table from, and the S3 bucket of the query results.
ATHENA_ACTIONS: tuple[str, ...] = (
    "athena:StartQueryExecution",
    "athena:GetQueryExecution",
    "athena:GetQueryResults",
    "athena:StopQueryExecution",  # only sgaudit's own query, when it runs past its timeout
    "glue:GetDatabase",
    "glue:GetTable",
    "glue:GetPartitions",
    "s3:GetBucketLocation",
)

#: The only actions that write, each scoped to what sgaudit's Athena queries need: Athena writes every
#: query's result to S3 (the workgroup's results location) under the caller's identity, and defining the
#: flow-log table is a ``CREATE EXTERNAL TABLE`` that Athena turns into ``glue:CreateTable`` (metadata
#: only: the flow-log objects are never written). Neither is needed without ``--engine athena``.
WRITE_ACTIONS: dict[str, str] = {
    "s3:PutObject": "arn:aws:s3:::ATHENA-RESULTS-BUCKET/sgaudit/*",
    "glue:CreateTable": "arn:aws:glue:*:*:table/sgaudit/*",
}

#: Every IAM action sgaudit may call.
ALLOWED_ACTIONS: tuple[str, ...] = READ_ONLY_ACTIONS + ATHENA_ACTIONS + tuple(WRITE_ACTIONS)

# The Glue catalog and database a table lives in must be named in the resource of glue:CreateTable too.
_GLUE_CREATE_RESOURCES = ("arn:aws:glue:*:*:catalog", "arn:aws:glue:*:*:database/sgaudit",
                          WRITE_ACTIONS["glue:CreateTable"])

# API operations whose IAM action is not "<service>:<OperationName>".
_ACTION_OF_OPERATION = {
    ("s3", "ListObjectsV2"): "s3:ListBucket",
    ("s3", "ListObjects"): "s3:ListBucket",
    ("s3", "HeadObject"): "s3:GetObject",
    ("s3", "HeadBucket"): "s3:ListBucket",
}

#: The snapshot files: (file name, operation, top key), in the order they are taken.
FILES: tuple[tuple[str, str, str], ...] = (
    ("security-group-rules.json", "describe_security_group_rules", "SecurityGroupRules"),
    ("security-groups.json", "describe_security_groups", "SecurityGroups"),
    ("network-interfaces.json", "describe_network_interfaces", "NetworkInterfaces"),
    ("managed-prefix-lists.json", "describe_managed_prefix_lists", "PrefixLists"),
    ("flow-logs.json", "describe_flow_logs", "FlowLogs"),
)
PREFIX_ENTRIES_DIR = "prefix-list-entries"
#: The steps of one region, for the progress bar: the five files, then the prefix-list entries.
STEPS = len(FILES) + 1

# Throttling is the usual failure of a large account's describe calls: adaptive mode rate-limits the
# client itself on throttling replies instead of failing the snapshot.
RETRY_CONFIG = {"retries": {"mode": "adaptive", "max_attempts": 10}}


@functools.cache
def retry_config():
    """The botocore ``Config`` of every client sgaudit makes (here and in `sgaudit.remote`): `RETRY_CONFIG`."""
    from botocore.config import Config

    return Config(**RETRY_CONFIG)

_DENIED = {"AccessDenied", "AccessDeniedException", "UnauthorizedOperation", "UnauthorizedAccess",
           "AuthorizationError"}


class CollectError(SgauditError):
    """An AWS call of ``sgaudit collect`` failed (names the region, the operation and AWS's message)."""


class AccessDeniedError(CollectError):
    """AWS denied a call: the message names the IAM action to allow and the policy in docs/aws.md."""


def iam_action(service: str, operation: str) -> str:
    """The IAM action an API operation needs.

    Parameters
    ----------
    service : str
        The IAM service prefix (botocore's signing name: ``ec2``, ``s3``, ``logs`` …).
    operation : str
        The API operation name (``DescribeSecurityGroupRules``, ``ListObjectsV2`` …).

    Returns
    -------
    str
        ``service:Action``, e.g. ``ec2:DescribeSecurityGroupRules``; S3's listing and head operations map
        to the actions AWS checks for them (``s3:ListBucket``, ``s3:GetObject``).
    """
    return _ACTION_OF_OPERATION.get((service, operation), f"{service}:{operation}")


def iam_policy() -> dict:
    """The IAM policy sgaudit needs: exactly `READ_ONLY_ACTIONS`, all reads.

    Returns
    -------
    dict
        The policy document (``Version`` and ``Statement``), as ``docs/aws.md`` shows it.
    """
    return {"Version": "2012-10-17", "Statement": [
        {"Sid": "SgauditReadOnly", "Effect": "Allow", "Action": list(READ_ONLY_ACTIONS), "Resource": "*"}]}


def athena_policy() -> dict:
    """What ``--engine athena`` adds: `ATHENA_ACTIONS`, and the two writes scoped as `WRITE_ACTIONS` says."""
    return {
        "Version": "2012-10-17",
        "Statement": [
            {"Sid": "SgauditAthenaQueries", "Effect": "Allow", "Action": list(ATHENA_ACTIONS), "Resource": "*"},
            {"Sid": "SgauditAthenaResults", "Effect": "Allow", "Action": ["s3:PutObject"],
             "Resource": [WRITE_ACTIONS["s3:PutObject"]]},
            {"Sid": "SgauditAthenaTable", "Effect": "Allow", "Action": ["glue:CreateTable"],
             "Resource": list(_GLUE_CREATE_RESOURCES)},
        ],
    }


def cli_json(doc: dict) -> str:
    """A response as the AWS CLI prints it: 4-space indented JSON, timestamps in ISO 8601, a final newline."""
    return json.dumps(doc, indent=4, ensure_ascii=False, default=_json_default) + "\n"


def _json_default(value: Any) -> str:
    # The AWS CLI prints botocore's datetimes with isoformat ("2024-05-01T10:00:00+00:00"), not str().
    if isinstance(value, datetime | date):
        return value.isoformat()
    return str(value)


def _client(session, service: str, region: str, endpoint_url: str | None):
    try:
        return session.client(service, region_name=region, endpoint_url=endpoint_url, config=retry_config())
    except ValueError as exc:  # botocore's "Invalid endpoint"
        raise CollectError(f"--endpoint-url {endpoint_url!r}: {exc}; give a URL such as "
                           "https://ec2.us-east-1.amazonaws.com, or leave it out to call AWS itself") from None


def _error(exc: Exception, operation: str, region: str) -> CollectError:
    """The sgaudit error for a failed call: what was called, where, why, and what to do."""
    from botocore.exceptions import ClientError, NoCredentialsError

    service, call = operation.split(":", 1)
    action = iam_action(service, call)
    if isinstance(exc, ClientError):
        code = exc.response.get("Error", {}).get("Code", "")
        message = exc.response.get("Error", {}).get("Message", "")
        if code in _DENIED:
            return AccessDeniedError(
                f"region {region}: {call} was denied ({code}: {message}). The identity needs the "
                f"IAM permission {action}: attach the sgaudit policy of docs/aws.md (or add {action} to its "
                "policy) and run again."
            )
        return CollectError(f"region {region}: {call} failed ({code}: {message})")
    if isinstance(exc, NoCredentialsError):
        return CollectError(f"region {region}: {call}: no AWS credentials found. Pass --profile "
                            "NAME or set AWS_PROFILE / AWS_ACCESS_KEY_ID (see docs/aws.md).")
    return CollectError(f"region {region}: {call} failed ({type(exc).__name__}: {exc})")


def _call(operation: str, region: str, fn: Callable[[], Any]) -> Any:
    """Run one AWS call, turning botocore's failures into a `CollectError` naming ``operation`` and ``region``."""
    from botocore.exceptions import BotoCoreError, ClientError
    from botocore.parsers import ResponseParserError

    try:
        return fn()
    except ResponseParserError as exc:
        # Not AWS's answer: a proxy's or a wrong endpoint's error page, or a region the endpoint does not serve.
        raise CollectError(f"region {region}: {operation.split(':', 1)[1]}: the answer is not AWS's "
                           f"({str(exc).splitlines()[0][:160]}); check --region and --endpoint-url") from exc
    except (ClientError, BotoCoreError) as exc:
        raise _error(exc, operation, region) from exc


def _paginate(client, method: str, key: str, region: str, **params) -> list[dict]:
    """Every item of a paginated call, the pages concatenated in order (as the AWS CLI does)."""
    operation = f"{client.meta.service_model.signing_name}:{client.meta.method_to_api_mapping[method]}"

    def run() -> list[dict]:
        items: list[dict] = []
        for page in client.get_paginator(method).paginate(**params):
            items += page.get(key, [])
        return items

    return _call(operation, region, run)


def enabled_regions(session, *, endpoint_url: str | None = None) -> list[str]:
    """The regions enabled for the account (``ec2:DescribeRegions`` without ``AllRegions``), sorted.

    Parameters
    ----------
    session : boto3.Session
        The credentials; its region (or us-east-1) answers the call.
    endpoint_url : str, optional
        Another EC2 endpoint (a local test server).

    Returns
    -------
    list of str
    """
    region = session.region_name or "us-east-1"
    ec2 = _client(session, "ec2", region, endpoint_url)
    reply = _call("ec2:DescribeRegions", region, lambda: ec2.describe_regions(AllRegions=False))
    return sorted(r["RegionName"] for r in reply["Regions"])


def account_id(session, *, endpoint_url: str | None = None) -> str:
    """The account of the session's credentials (``sts:GetCallerIdentity``)."""
    region = session.region_name or "us-east-1"
    sts = _client(session, "sts", region, endpoint_url)
    return _call("sts:GetCallerIdentity", region, sts.get_caller_identity)["Account"]


def _write(path: Path, doc: dict) -> None:
    path.write_text(cli_json(doc), encoding="utf-8")


@dataclass(frozen=True)
class RegionSnapshot:
    """What the calls of one region answered, not yet written (`read_region`, then `write_region`)."""

    region: str
    found: dict[str, list[dict]]
    entries: dict[str, list[dict]]


def read_region(session, region: str, *, endpoint_url: str | None = None,
                step: Callable[[str], None] | None = None) -> RegionSnapshot:
    """Make every call of one region's snapshot, writing nothing.

    Parameters
    ----------
    session : boto3.Session
        The credentials.
    region : str
        The region to read.
    endpoint_url : str, optional
        Another EC2 endpoint (a local test server).
    step : callable, optional
        Called with the name of each call once it is done (the progress bar).

    Raises
    ------
    AccessDeniedError
        When AWS denies a call: names the IAM action to allow.
    CollectError
        For any other failed call, naming the region and the operation.
    """
    ec2 = _client(session, "ec2", region, endpoint_url)
    found: dict[str, list[dict]] = {}
    for _, method, key in FILES:
        found[key] = _paginate(ec2, method, key, region)
        if step:
            step(method)
    # AWS-managed lists (S3, DynamoDB, CloudFront origin-facing …) are read too: rules reference them as
    # often as customer lists, and without their entries such a rule's peers are unknown.
    wanted = sorted({pl["PrefixListId"] for pl in found["PrefixLists"]})
    entries = {pl: _paginate(ec2, "get_managed_prefix_list_entries", "Entries", region, PrefixListId=pl)
               for pl in wanted}
    if step:
        step("get_managed_prefix_list_entries")
    return RegionSnapshot(region, found, entries)


def write_region(folder: str | Path, snap: RegionSnapshot) -> Path:
    """Write one region's answers into ``folder`` as the AWS CLI's files (created if needed).

    Entry files of prefix lists no longer in the region are removed, so that a second run into the same
    folder does not keep stale lists.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    for name, _, key in FILES:
        _write(folder / name, {key: snap.found[key]})
    entries_dir = folder / PREFIX_ENTRIES_DIR
    entries_dir.mkdir(exist_ok=True)
    for stale in entries_dir.glob("*.json"):
        if stale.stem not in snap.entries:
            stale.unlink()
    for pl, items in snap.entries.items():
        _write(entries_dir / f"{pl}.json", {"Entries": items})
    return folder


def read(session, regions: str | Sequence[str] | None, out_dir: str | Path, *, endpoint_url: str | None = None,
         progress: bool | None = None, tree: bool | None = None) -> list[tuple[Path, RegionSnapshot]]:
    """Make every call of a snapshot of one or several regions and say where each region goes; write nothing.

    The parameters are `snapshot`'s. Returns (folder, answers) per region, in the order of ``regions``, for
    `write`. Several accounts (``sgaudit collect --profile A --profile B``) are read one after the other and
    written together, so that a failure in any of them writes nothing.
    """
    names = _regions(session, regions, endpoint_url)
    out = Path(out_dir)
    if tree is None:
        tree = len(names) > 1
    if tree:
        # A flat snapshot at the root would hide the subfolders from sgaudit.inventory.load.
        if (out / FILES[0][0]).exists():
            raise CollectError(f"{out}: already holds a single-region snapshot ({FILES[0][0]}); write the "
                               "multi-region snapshot to an empty folder")
        account = account_id(session, endpoint_url=endpoint_url)
        folders = [out / account / r for r in names]
    else:
        # Files at the root make sgaudit.inventory.load read the root alone: an older tree below would be
        # silently ignored, or worse, mistaken for part of this snapshot by a reader of the folder.
        if out.is_dir() and any(p.parent != out for p in out.rglob(FILES[0][0])):
            raise CollectError(f"{out}: already holds a multi-region snapshot (<account-id>/<region>/ folders); "
                               "write the single-region snapshot to an empty folder")
        folders = [out]
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=len(names) * STEPS, unit="call", desc="collecting", leave=False)
    answers = []
    try:
        for region in names:
            def step(call: str, region: str = region) -> None:
                if bar is not None:
                    bar.set_postfix_str(f"{region} {call}", refresh=False)
                    bar.update()
            answers.append(read_region(session, region, endpoint_url=endpoint_url, step=step))
    finally:
        if bar is not None:
            bar.close()
    return list(zip(folders, answers, strict=True))


def write(gathered: Iterable[tuple[Path, RegionSnapshot]]) -> list[Path]:
    """Write what `read` gathered, each region into its folder; returns the folders."""
    return [write_region(folder, snap) for folder, snap in gathered]


def snapshot(session, regions: str | Sequence[str] | None, out_dir: str | Path, *, endpoint_url: str | None = None,
             progress: bool | None = None, tree: bool | None = None) -> list[Path]:
    """Write the inventory snapshot of one or several regions.

    Every region is read before any file is written: a denied or failed call in any region leaves the
    output folder as it was, never a snapshot mixed from two runs.

    Parameters
    ----------
    session : boto3.Session
        The credentials (one account).
    regions : str, list of str, or None
        A region, several, ``"all"`` (the account's enabled regions), or None (the session's region).
    out_dir : str or Path
        The snapshot folder. One region: the files go straight into it; several: into
        ``<account-id>/<region>/`` subfolders.
    endpoint_url : str, optional
        Another AWS endpoint (a local test server); AWS itself when None.
    progress : bool, optional
        Draw a tqdm bar over (region, call) on stderr.
    tree : bool, optional
        Force the ``<account-id>/<region>/`` layout even for one region (several accounts into one folder).
        Default: the tree for several regions only.

    Returns
    -------
    list of Path
        The folder written for each region, in the order of ``regions``.

    Raises
    ------
    AccessDeniedError
        When AWS denies a call: names the IAM action, the region and the policy to attach.
    CollectError
        For any other failed call, or an output folder that already holds a snapshot of the other layout
        (the loader would read only one of the two).
    """
    return write(read(session, regions, out_dir, endpoint_url=endpoint_url, progress=progress, tree=tree))


def _regions(session, regions: str | Iterable[str] | None, endpoint_url: str | None) -> list[str]:
    if regions is None:
        if not session.region_name:
            raise CollectError("no region: pass --region NAME (or all), or set AWS_REGION / the profile's region")
        return [session.region_name]
    if isinstance(regions, str):
        regions = [regions]
    names = list(dict.fromkeys(regions))  # keeps the order given, drops repeats
    if "all" in names:
        return enabled_regions(session, endpoint_url=endpoint_url)
    if not names:
        raise CollectError("no region given")
    for name in names:
        # AWS's region names: us-east-1, eu-central-2, us-gov-west-1, cn-north-1 …
        if not re.fullmatch(r"[a-z]{2}(-[a-z]+)+-[0-9]+", name):
            raise CollectError(f"--region {name!r}: not an AWS region name such as us-east-1 (or 'all' for the "
                               "account's enabled regions)")
    return names


def counts(folder: str | Path) -> dict[str, int]:
    """How many items each file of a snapshot folder holds (what ``sgaudit collect`` prints)."""
    folder = Path(folder)
    result = {}
    for name, _method, key in FILES:
        path = folder / name
        result[key] = len(json.loads(path.read_text(encoding="utf-8"))[key]) if path.exists() else 0
    return result
