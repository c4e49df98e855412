"""``sgaudit collect`` against moto's HTTP server: the snapshot it writes, that sgaudit reads it, and that it
calls nothing but the IAM actions docs/aws.md allows."""

from __future__ import annotations

import json
import re
from pathlib import Path

import botocore.session
import pytest
import sgaudit
from botocore import xform_name
from botocore.awsrequest import AWSResponse
from builders import handshake, row, write_log
from sgaudit import cli, collect

ROOT = Path(__file__).resolve().parents[1]
ACCOUNT = "123456789012"  # moto's account
REGION = "us-east-1"
LOG_FORMAT = "${version} ${interface-id} ${srcaddr} ${dstaddr} ${tcp-flags} ${flow-direction}"


@pytest.fixture
def calls(aws):
    """A session whose every AWS call is recorded as its IAM action; the test fails on any action not allowed.

    The hook is botocore's own ``before-call`` event on the session the code under test uses, so it sees
    exactly the operations sgaudit sends to the server (paginated pages included).
    """
    session = aws.session()
    seen: list[str] = []

    def record(model, **_):
        seen.append(collect.iam_action(model.service_model.signing_name, model.name))

    session.events.register("before-call", record)
    yield session, seen
    not_allowed = sorted(set(seen) - set(collect.ALLOWED_ACTIONS))
    assert not not_allowed, f"sgaudit called AWS operations outside docs/aws.md's policy: {not_allowed}"


def _account(aws, region: str = REGION, *, cidr: str = "10.0.0.0/16") -> dict:
    """Build a small account in one region (with a separate, unhooked session): the ids the tests need."""
    session = aws.session(region)
    ec2 = session.client("ec2", endpoint_url=aws.url)
    vpc = ec2.create_vpc(CidrBlock=cidr)["Vpc"]["VpcId"]
    subnet = ec2.create_subnet(VpcId=vpc, CidrBlock=cidr.replace("0.0/16", "1.0/24"))["Subnet"]["SubnetId"]
    web = ec2.create_security_group(GroupName="web", Description="web servers", VpcId=vpc)["GroupId"]
    client = ec2.create_security_group(GroupName="client", Description="clients", VpcId=vpc)["GroupId"]
    pl = ec2.create_managed_prefix_list(PrefixListName="office", AddressFamily="IPv4", MaxEntries=5, Entries=[
        {"Cidr": "203.0.113.0/24", "Description": "office"}])["PrefixList"]["PrefixListId"]
    ec2.authorize_security_group_ingress(GroupId=web, IpPermissions=[
        {"IpProtocol": "tcp", "FromPort": 22, "ToPort": 22, "IpRanges": [{"CidrIp": "10.0.0.0/8"}]},
        {"IpProtocol": "tcp", "FromPort": 443, "ToPort": 443, "UserIdGroupPairs": [{"GroupId": client}]},
        {"IpProtocol": "tcp", "FromPort": 8080, "ToPort": 8080, "PrefixListIds": [{"PrefixListId": pl}]},
        {"IpProtocol": "tcp", "FromPort": 3306, "ToPort": 3306, "IpRanges": [{"CidrIp": "192.168.0.0/16"}]},
    ])
    base = cidr.split(".0.0/")[0]
    web_eni = ec2.create_network_interface(SubnetId=subnet, Groups=[web], PrivateIpAddresses=[
        {"PrivateIpAddress": f"{base}.1.10", "Primary": True},
        {"PrivateIpAddress": f"{base}.1.11", "Primary": False}])["NetworkInterface"]["NetworkInterfaceId"]
    client_eni = ec2.create_network_interface(SubnetId=subnet, Groups=[client], PrivateIpAddress=f"{base}.1.20")[
        "NetworkInterface"]["NetworkInterfaceId"]
    s3 = session.client("s3", endpoint_url=aws.url)
    bucket = f"flow-logs-{region}"
    if region == "us-east-1":
        s3.create_bucket(Bucket=bucket)
    else:
        s3.create_bucket(Bucket=bucket, CreateBucketConfiguration={"LocationConstraint": region})
    made = ec2.create_flow_logs(ResourceIds=[vpc], ResourceType="VPC", TrafficType="ALL", LogDestinationType="s3",
                                LogDestination=f"arn:aws:s3:::{bucket}", LogFormat=LOG_FORMAT)
    assert made["FlowLogIds"], made
    rules = ec2.describe_security_group_rules(Filters=[{"Name": "group-id", "Values": [web]}])["SecurityGroupRules"]
    by_port = {r["FromPort"]: r["SecurityGroupRuleId"] for r in rules if not r["IsEgress"]}
    return {"vpc": vpc, "web": web, "client": client, "pl": pl, "web_eni": web_eni, "client_eni": client_eni,
            "rules": by_port, "base": base, "ec2": ec2}


def _load(path: Path) -> dict:
    return json.loads(path.read_text())


def test_snapshot_writes_the_aws_cli_folder(calls, aws, tmp_path):
    session, seen = calls
    acct = _account(aws)
    out = tmp_path / "inv"
    assert collect.snapshot(session, REGION, out, endpoint_url=aws.url) == [out]

    rules = _load(out / "security-group-rules.json")["SecurityGroupRules"]
    assert {r["SecurityGroupRuleId"] for r in rules} >= set(acct["rules"].values())
    assert any(r.get("PrefixListId") == acct["pl"] for r in rules)
    assert any(r.get("ReferencedGroupInfo", {}).get("GroupId") == acct["client"] for r in rules)
    assert {g["GroupName"] for g in _load(out / "security-groups.json")["SecurityGroups"]} >= {"web", "client"}
    enis = {n["NetworkInterfaceId"]: n for n in _load(out / "network-interfaces.json")["NetworkInterfaces"]}
    assert [a["PrivateIpAddress"] for a in enis[acct["web_eni"]]["PrivateIpAddresses"]] == [
        "10.0.1.10", "10.0.1.11"]
    # Customer and AWS-managed prefix lists, each with its entries file.
    pls = _load(out / "managed-prefix-lists.json")["PrefixLists"]
    assert acct["pl"] in {p["PrefixListId"] for p in pls} and any(p["OwnerId"] == "AWS" for p in pls)
    assert sorted(f.stem for f in (out / "prefix-list-entries").glob("*.json")) == sorted(
        p["PrefixListId"] for p in pls)
    assert _load(out / "prefix-list-entries" / f"{acct['pl']}.json") == {
        "Entries": [{"Cidr": "203.0.113.0/24", "Description": "office"}]}
    # moto 5.2.5 answers describe_flow_logs, LogFormat included.
    flow_logs = _load(out / "flow-logs.json")["FlowLogs"]
    assert [f["LogFormat"] for f in flow_logs] == [LOG_FORMAT]

    # Byte for byte what the AWS CLI prints: the response minus ResponseMetadata, indent 4, final newline.
    direct = acct["ec2"].describe_security_groups()
    del direct["ResponseMetadata"]
    assert (out / "security-groups.json").read_text() == json.dumps(direct, indent=4) + "\n"
    # Timestamps as the CLI prints them (isoformat), not Python's str().
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?\+00:00", flow_logs[0]["CreationTime"])

    # Only the read-only EC2 calls, each paginated list read through.
    assert set(seen) == {"ec2:DescribeSecurityGroupRules", "ec2:DescribeSecurityGroups",
                         "ec2:DescribeNetworkInterfaces", "ec2:DescribeManagedPrefixLists",
                         "ec2:GetManagedPrefixListEntries", "ec2:DescribeFlowLogs"}


def test_collected_snapshot_gives_the_usage_of_each_kind_of_rule(calls, aws, tmp_path):
    session, _ = calls
    acct = _account(aws)
    out = tmp_path / "inv"
    collect.snapshot(session, [REGION], out, endpoint_url=aws.url)
    inv = sgaudit.load_inventory(out)
    assert acct["web_eni"] in set(inv.interfaces["interface_id"])
    assert not [p for p in inv.problems if acct["pl"] in str(p)]

    eni = acct["web_eni"]
    records = (handshake(eni, "10.9.0.9", "10.0.1.11", 40000, 22)         # CIDR rule, to the secondary IP
               + handshake(eni, "10.0.1.20", "10.0.1.10", 40001, 443)     # the client group's interface
               + handshake(eni, "203.0.113.7", "10.0.1.10", 40002, 8080))  # the prefix list's entry
    log = write_log(tmp_path / "logs" / "flow.log.gz", records)
    result = sgaudit.analyze(log, out)
    try:
        for port in (22, 443, 8080):
            r = row(result, acct["rules"][port])
            assert (r["status"], r["evidence"], r["connections"]) == ("used", "established", 1), port
        assert row(result, acct["rules"][3306])["status"] == "unused"
    finally:
        result.close()


def test_two_regions_write_the_account_region_tree_that_loads_as_one(calls, aws, tmp_path):
    session, seen = calls
    east = _account(aws, "us-east-1")
    west = _account(aws, "eu-west-1", cidr="10.1.0.0/16")
    out = tmp_path / "inv"
    folders = collect.snapshot(session, ["us-east-1", "eu-west-1"], out, endpoint_url=aws.url)
    assert folders == [out / ACCOUNT / "us-east-1", out / ACCOUNT / "eu-west-1"]
    assert not (out / "security-group-rules.json").exists()
    assert "sts:GetCallerIdentity" in seen
    inv = sgaudit.load_inventory(out)
    assert {east["web_eni"], west["web_eni"]} <= set(inv.interfaces["interface_id"])
    assert {east["web"], west["web"]} <= set(inv.groups["group_id"])

    # A flat snapshot already at the root would hide the tree from the loader: refused.
    flat = tmp_path / "flat"
    collect.snapshot(session, REGION, flat, endpoint_url=aws.url)
    with pytest.raises(collect.CollectError, match="single-region snapshot"):
        collect.snapshot(session, ["us-east-1", "eu-west-1"], flat, endpoint_url=aws.url)
    # … and so would a tree below a flat snapshot.
    with pytest.raises(collect.CollectError, match="multi-region snapshot"):
        collect.snapshot(session, REGION, out, endpoint_url=aws.url)


def test_all_means_the_enabled_regions(calls, aws):
    session, seen = calls
    regions = collect.enabled_regions(session, endpoint_url=aws.url)
    assert {"us-east-1", "eu-west-1"} <= set(regions) and regions == sorted(regions)
    assert seen == ["ec2:DescribeRegions"]


def test_rerun_removes_entries_of_deleted_prefix_lists(calls, aws, tmp_path):
    session, _ = calls
    out = tmp_path / "inv"
    (out / "prefix-list-entries").mkdir(parents=True)
    (out / "prefix-list-entries" / "pl-gone.json").write_text('{"Entries": []}')
    collect.snapshot(session, REGION, out, endpoint_url=aws.url, progress=True)  # the bar draws and closes
    assert not (out / "prefix-list-entries" / "pl-gone.json").exists()
    assert list((out / "prefix-list-entries").glob("*.json"))  # moto's AWS-managed lists


def _deny(operation: str):
    """A before-call hook answering ``operation`` with EC2's 403 UnauthorizedOperation instead of sending it."""
    def handler(model, **_):
        if model.name == operation:
            http = AWSResponse("https://ec2.amazonaws.com/", 403, {}, None)
            return http, {"Error": {"Code": "UnauthorizedOperation",
                                    "Message": "You are not authorized to perform this operation."},
                          "ResponseMetadata": {"HTTPStatusCode": 403}}
        return None
    return handler


def test_access_denied_names_the_permission_region_and_fix(calls, aws, tmp_path):
    """moto allows everything, so the denial is injected by a botocore ``before-call`` hook that answers the
    call with the error AWS returns; what is tested is sgaudit's handling of it, not AWS."""
    session, _ = calls
    session.events.register("before-call.ec2.DescribeNetworkInterfaces", _deny("DescribeNetworkInterfaces"))
    with pytest.raises(collect.AccessDeniedError) as info:
        collect.snapshot(session, "eu-west-1", tmp_path / "inv", endpoint_url=aws.url)
    msg = str(info.value)
    assert isinstance(info.value, sgaudit.SgauditError)
    for part in ("eu-west-1", "DescribeNetworkInterfaces", "ec2:DescribeNetworkInterfaces", "docs/aws.md",
                 "UnauthorizedOperation"):
        assert part in msg, (part, msg)


def test_a_failed_collect_leaves_the_folder_as_it_was(calls, aws, tmp_path):
    # Files are written only once every call has succeeded: never a snapshot mixed from two runs.
    session, _ = calls
    out = tmp_path / "inv"
    collect.snapshot(session, REGION, out, endpoint_url=aws.url)
    before = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    session.events.register("before-call.ec2.DescribeNetworkInterfaces", _deny("DescribeNetworkInterfaces"))
    for folder in (out, tmp_path / "new"):
        with pytest.raises(collect.AccessDeniedError):
            collect.snapshot(session, REGION, folder, endpoint_url=aws.url)
    assert {p: p.read_bytes() for p in out.rglob("*") if p.is_file()} == before
    assert not (tmp_path / "new").exists()


def test_a_failure_in_a_later_region_writes_no_region(calls, aws, tmp_path):
    # Every region is read before any is written: a snapshot whose first region came from this run and
    # the rest from an earlier one would be read as one account, from two moments.
    session, _ = calls
    out = tmp_path / "inv"
    collect.snapshot(session, ["us-east-1", "eu-west-1"], out, endpoint_url=aws.url)
    before = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    _account(aws, "us-east-1")  # the first region changes, so a rewrite of it would show
    denied = _deny("DescribeNetworkInterfaces")

    def deny_in_eu_west_1(model, context, **kwargs):
        if context.get("client_region") == "eu-west-1":
            return denied(model=model, context=context, **kwargs)
        return None

    session.events.register("before-call.ec2.DescribeNetworkInterfaces", deny_in_eu_west_1)
    with pytest.raises(collect.AccessDeniedError, match="eu-west-1"):
        collect.snapshot(session, ["us-east-1", "eu-west-1"], out, endpoint_url=aws.url)
    assert {p: p.read_bytes() for p in out.rglob("*") if p.is_file()} == before


@pytest.mark.parametrize("args,message", [
    pytest.param(["--region", "not-a-region"], "--region 'not-a-region': not an AWS region name", id="region-name"),
    pytest.param(["--region", ""], "--region '': not an AWS region name", id="region-empty"),
    pytest.param(["--region", "us-east-99"], "region us-east-99: DescribeSecurityGroupRules: the answer is not "
                 "AWS's", id="region-the-endpoint-does-not-serve"),
    pytest.param(["--region", REGION, "--endpoint-url", "not-a-url"], "--endpoint-url 'not-a-url'", id="endpoint"),
])
def test_cli_collect_bad_region_or_endpoint_exits_2_and_writes_nothing(aws, tmp_path, capsys, args, message):
    argv = ["collect", *args, "--out", str(tmp_path / "inv"), "--no-progress"]
    if "--endpoint-url" not in args:
        argv += ["--endpoint-url", aws.url]
    assert cli.main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
    assert not (tmp_path / "inv").exists()


def test_cli_collect_out_that_is_a_file_exits_2(aws, tmp_path, capsys):
    (tmp_path / "afile").write_text("")
    assert cli.main(["collect", "--region", REGION, "--endpoint-url", aws.url, "--out", str(tmp_path / "afile"),
                     "--no-progress"]) == 2
    assert "afile: is a file; the snapshot is a folder" in capsys.readouterr().err


def test_cli_collect_prints_counts(aws, tmp_path, capsys):
    _account(aws)
    out = tmp_path / "inv"
    assert cli.main(["collect", "--region", REGION, "--endpoint-url", aws.url, "--out", str(out),
                     "--no-progress"]) == 0
    printed = capsys.readouterr().out
    n = collect.counts(out)
    # web and client, plus the default groups of moto's default VPC and of the new one
    assert n["SecurityGroups"] == 4 and n["NetworkInterfaces"] == 2 and n["FlowLogs"] == 1
    assert (f"{out}: 4 groups, {n['SecurityGroupRules']} rules, 2 interfaces, {n['PrefixLists']} prefix lists, "
            "1 flow logs") in printed

    tree = tmp_path / "tree"
    assert cli.main(["collect", "--region", "us-east-1", "eu-west-1", "--endpoint-url", aws.url, "--out",
                     str(tree), "--no-progress"]) == 0
    assert (tree / ACCOUNT / "eu-west-1" / "security-group-rules.json").exists()
    assert "note" not in capsys.readouterr().out
    # Another run with other regions: the earlier region stays, and is read with the rest, so it is named.
    assert cli.main(["collect", "--region", "us-east-1", "us-west-2", "--endpoint-url", aws.url, "--out",
                     str(tree), "--no-progress"]) == 0
    notes = [s for s in capsys.readouterr().out.splitlines() if s.startswith("note")]
    assert notes == [f"note        {tree / ACCOUNT / 'eu-west-1'}: from an earlier run, not collected now, and "
                     "read with this snapshot; remove it if that region's rules are not to be audited"]


def test_cli_collect_error_exits_2(aws, tmp_path, capsys):
    assert cli.main(["collect", "--profile", "no-such-profile-sgaudit", "--region", REGION, "--endpoint-url",
                     aws.url, "--out", str(tmp_path / "inv")]) == 2
    assert "no-such-profile-sgaudit" in capsys.readouterr().err


def test_docs_policy_is_the_code_policy_and_only_reads():
    text = (ROOT / "docs" / "aws.md").read_text()
    read_only, athena = (json.loads(b) for b in re.findall(r"```json\n(.*?)```", text, re.S))
    assert read_only == collect.iam_policy() and athena == collect.athena_policy()
    listed = [a for s in read_only["Statement"] for a in s["Action"]]
    assert listed and all(re.match(r"\w+:(Describe|Get|List|FilterLogEvents)", a) for a in listed), listed
    every = listed + [a for s in athena["Statement"] for a in s["Action"]]
    assert sorted(every) == sorted(collect.ALLOWED_ACTIONS)


WRITE_PREFIXES = ("create_", "delete_", "put_", "modify_", "authorize_", "revoke_")
# Athena writes the query's result itself; sgaudit only starts the query.
ALLOWED_WRITE_CALLS = {"start_query_execution"}


def test_no_write_call_in_the_code():
    """No boto3 client method that writes is called anywhere in toolkit/sgaudit (a static check).

    Only names that are methods of the AWS clients sgaudit uses count, so DuckDB's ``create_function`` and
    the like do not.
    """
    bc = botocore.session.get_session()
    methods = {xform_name(op) for svc in ("ec2", "s3", "logs", "athena", "glue", "sts")
               for op in bc.get_service_model(svc).operation_names}
    writes = {m for m in methods if m.startswith(WRITE_PREFIXES)} - ALLOWED_WRITE_CALLS
    found = []
    for path in sorted((ROOT / "toolkit" / "sgaudit").rglob("*.py")):
        for n, text in enumerate(path.read_text().splitlines(), 1):
            found += [f"{path.name}:{n}: {m}" for m in re.findall(r"\.(\w+)\s*\(", text) if m in writes]
    assert not found, found


def test_iam_action_of_operations():
    assert collect.iam_action("ec2", "DescribeSecurityGroupRules") == "ec2:DescribeSecurityGroupRules"
    assert collect.iam_action("s3", "ListObjectsV2") == "s3:ListBucket"
    assert collect.iam_action("s3", "HeadObject") == "s3:GetObject"
