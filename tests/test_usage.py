"""Usage per key and rateLimits: the rateLimits key (fleet/rate_limits.py), what each cloud plans for it (the VMs'
limits file, AWS WAF, Cloud Armor), and `make usage` (cli/usage.py) against moto's CloudWatch (AWS) and against
answers in the shape Cloud Monitoring's timeSeries.list and Azure Monitor's metrics API document (no emulator of
either exists): requests, tokens, GPU hours and the cost shared out by tokens."""

from __future__ import annotations

import datetime as dt
import io
import json
import urllib.parse
from contextlib import redirect_stdout

import pytest
import yaml

from cli import usage as usage_tool
from cli.plan import stack_spec
from conftest import config_of, launcher_argv, run_plan, write_files
from fleet import bootstrap, usage
from fleet.errors import ConfigError
from fleet.rate_limits import Limit, parse_rate_limits
from fleet.sizing import size

KEYS = ("alice", "ci", "default")
LIMITS = {"default": {"requestsPerMinute": 600, "tokensPerMinute": 400000}, "keys": {"ci": {"requestsPerMinute": 60},
                                                                                      "alice": {"requestsPerMinute": 900}}}


# --- rateLimits ------------------------------------------------------------------------------------------------
def test_rate_limits_default_and_per_key():
    limits = parse_rate_limits(LIMITS, KEYS)
    assert limits.of("ci") == Limit(requests_per_minute=60)  # its own entry replaces the default
    assert limits.of("default") == Limit(600, 400000)
    assert limits.edge_requests_per_minute(KEYS) == 900  # the edge cannot tell the keys apart: the highest
    assert json.loads(limits.vm_file()) == {"default": {"requestsPerMinute": 600, "tokensPerMinute": 400000},
                                            "keys": {"alice": {"requestsPerMinute": 900},
                                                     "ci": {"requestsPerMinute": 60}}}
    # a key with no request limit: no edge rule can hold it
    assert parse_rate_limits({"keys": {"ci": {"requestsPerMinute": 60}}}, KEYS).edge_requests_per_minute(KEYS) is None
    assert parse_rate_limits(None, KEYS).vm_file() == parse_rate_limits(None, ()).vm_file()


@pytest.mark.parametrize("value, key, says", [
    ({"defaults": {}}, "rateLimits", "default: {requestsPerMinute"),
    ("600", "rateLimits", "default: {requestsPerMinute"),
    ({"default": {"requestsPerMinut": 5}}, "rateLimits.default.requestsPerMinut", "did you mean requestsPerMinute"),
    ({"default": {"requestsPerMinute": 0}}, "rateLimits.default.requestsPerMinute", "from 1 to"),
    ({"default": {"requestsPerMinute": True}}, "rateLimits.default.requestsPerMinute", "whole number"),
    ({"default": {"tokensPerMinute": 1.5}}, "rateLimits.default.tokensPerMinute", "whole number"),
    ({"default": {}}, "rateLimits.default", "a map of requestsPerMinute"),
    ({"keys": {"bob": {"requestsPerMinute": 5}}}, "rateLimits.keys.bob", "its keys: alice, ci, default"),
    ({"keys": []}, "rateLimits.keys", "a map of API key names"),
])
def test_bad_rate_limits_are_one_clear_error(value, key, says):
    with pytest.raises(ConfigError) as error:
        parse_rate_limits(value, KEYS)
    assert error.value.key == key and says in str(error.value)


def _stack(tmp_path, name: str, config: dict) -> str:
    path = tmp_path / f"Pulumi.{name}.yaml"
    path.write_text(yaml.safe_dump({"config": {f"vllm-fleet:{k}": v for k, v in config.items()}}))
    return str(path)


def _limited(base: str) -> dict:
    return {**config_of(base), "apiKeys": {name: {"secure": f"v1:{name}"} for name in KEYS}, "rateLimits": LIMITS}


def test_a_stack_file_rejects_limits_for_a_key_it_does_not_have(tmp_path):
    config = {**_limited("codellama-dev"), "rateLimits": {"keys": {"bob": {"requestsPerMinute": 5}}}}
    with pytest.raises(ConfigError, match="rateLimits.keys.bob"):
        stack_spec(_stack(tmp_path, "case", config))


@pytest.mark.parametrize("base", ["codellama-dev", "codellama-gcp", "codellama-azure"])
def test_every_cloud_gives_its_vms_the_limits_and_the_usage_layer(tmp_path, base):
    result = run_plan(_stack(tmp_path, base, _limited(base)))
    assert result.returncode == 0, result.stderr
    plan = json.loads(result.stdout)
    files = write_files(plan["userData"])
    assert json.loads(files[bootstrap.PATHS["rate_limits"]]["content"]) == json.loads(
        parse_rate_limits(LIMITS, KEYS).vm_file())
    module = files[bootstrap.PATHS["usage_module"]]["content"]
    compile(module, "fleet_usage.py", "exec")  # rendered Python
    assert all(counter.name in module for counter in usage.KEY_COUNTERS)
    unit = files["/etc/systemd/system/vllm.service"]["content"]
    assert f"PYTHONPATH={usage.MODULE_DIR} " in unit and f"{usage.KEY_HASHES_VARIABLE}={usage.KEY_HASHES_FILE}" in unit
    argv = launcher_argv(files[bootstrap.PATHS["launcher"]]["content"])
    assert argv[argv.index("--middleware") + 1] == usage.MIDDLEWARE
    steps = {s["type"]: s["newState"]["inputs"] for s in plan["steps"]}
    if plan_cloud(base) == "aws":
        [rule] = steps["aws:wafv2/webAcl:WebAcl"]["rules"]
        statement = rule["statement"]["rateBasedStatement"]
        assert statement["limit"] == 900 and statement["evaluationWindowSec"] == 60
        assert statement["customKeys"] == [{"header": {"name": "authorization",
                                                       "textTransformations": [{"priority": 0, "type": "NONE"}]}}]
        response = rule["action"]["block"]["customResponse"]
        assert response["responseCode"] == 429 and response["responseHeaders"][0]["name"] == "Retry-After"
        [body] = steps["aws:wafv2/webAcl:WebAcl"]["customResponseBodies"]
        assert json.loads(body["content"])["error"]["code"] == "rate_limit_exceeded"
        assert "aws:wafv2/webAclAssociation:WebAclAssociation" in steps
    elif plan_cloud(base) == "gcp":
        allowed = [r for r in steps["gcp:compute/securityPolicy:SecurityPolicy"]["rules"]
                   if r["description"] == "allowedCidrs"]
        assert allowed and all(r["action"] == "throttle" for r in allowed)
        assert allowed[0]["rateLimitOptions"] == {
            "conformAction": "allow", "exceedAction": "deny(429)", "enforceOnKey": "HTTP_HEADER",
            "enforceOnKeyName": "Authorization", "rateLimitThreshold": {"count": 900, "intervalSec": 60}}
    else:  # Application Gateway's rate-limit rules group by client address or geography only: the VMs limit
        assert not any("waf" in t.lower() or "firewall" in t.lower() for t in steps)


def plan_cloud(base: str) -> str:
    return config_of(base)["cloud"]


def test_without_rate_limits_the_edge_has_no_rule(plan_of):
    plan = plan_of("codellama-dev")
    assert not plan.resources("aws:wafv2/webAcl:WebAcl")
    [policy] = plan_of("codellama-gcp").resources("gcp:compute/securityPolicy:SecurityPolicy")
    assert not any(r["action"] == "throttle" for r in policy["rules"])


# --- make usage -------------------------------------------------------------------------------------------------
END = dt.datetime(2026, 12, 7, 12, tzinfo=dt.timezone.utc)
START = END - dt.timedelta(days=7)
# What the VMs counted, per key: (requests, prompt tokens, completion tokens, {status: errors}).
COUNTED = {"alice": (120, 300_000, 100_000, {"400": 2}), "ci": (40, 50_000, 50_000, {"429": 7})}
VMS_HOURLY = [2, 2, 1, 1]  # VMs in service in four hours of the period: 6 VM hours


def check_report(spec, result):
    sizing = size(spec)
    price = sizing.price.usd_per_hour if sizing.price else result["usdPerVmHour"]
    gpus = sizing.instance.gpu_count
    assert result["vmHours"] == 6 and result["gpuHours"] == 6 * gpus
    assert result["usd"] == round(6 * price, 2) and result["tokens"] == 500_000
    alice, ci = result["keys"]  # most tokens first
    assert (alice["key"], alice["requests"], alice["promptTokens"], alice["completionTokens"]) == (
        "alice", 120, 300_000, 100_000)
    assert alice["errors"] == {"400": 2} and ci["errors"] == {"429": 7}
    assert alice["tokenShare"] == 0.8 and ci["tokenShare"] == 0.2
    assert alice["usd"] == round(0.8 * 6 * price, 2) and alice["gpuHours"] == round(0.8 * 6 * gpus, 2)
    assert alice["usdPerMillionTokens"] == ci["usdPerMillionTokens"] == result["usdPerMillionTokens"] == round(
        6 * price / 500_000 * 1e6, 4)


def test_make_usage_on_aws_reads_cloudwatch(monkeypatch):
    moto = pytest.importorskip("moto")  # requirements-dev.txt: make test installs it
    import boto3

    from components.aws.fleet import group_name

    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    spec = stack_spec("codellama-dev")
    names = usage.MONITORING["aws"]
    with moto.mock_aws():
        cloudwatch = boto3.client("cloudwatch", region_name=spec.region)
        for key, (requests, prompt, completion, errors) in COUNTED.items():
            # the shipping writes increases: each counter in two datapoints, a day apart
            for counter, value, status in [(usage.REQUESTS, requests, None), (usage.PROMPT_TOKENS, prompt, None),
                                           (usage.COMPLETION_TOKENS, completion, None),
                                           *((usage.ERRORS, n, s) for s, n in errors.items())]:
                dims = [{"Name": names["stack"], "Value": spec.stack}, {"Name": names["key"], "Value": key}]
                dims += [{"Name": names["status"], "Value": status}] if status else []
                for day, part in ((1, value // 2), (3, value - value // 2)):
                    cloudwatch.put_metric_data(Namespace=names["namespace"], MetricData=[{
                        "MetricName": usage.metric_name("aws", counter), "Dimensions": dims, "Value": part,
                        "Timestamp": START + dt.timedelta(days=day)}])
        # another stack's counters are not this one's
        cloudwatch.put_metric_data(Namespace=names["namespace"], MetricData=[{
            "MetricName": usage.metric_name("aws", usage.REQUESTS), "Value": 99,
            "Timestamp": START + dt.timedelta(days=1),
            "Dimensions": [{"Name": names["stack"], "Value": "other"}, {"Name": names["key"], "Value": "alice"}]}])
        for hour, vms in enumerate(VMS_HOURLY):
            cloudwatch.put_metric_data(Namespace="AWS/AutoScaling", MetricData=[{
                "MetricName": "GroupInServiceInstances", "Value": vms, "Timestamp": START + dt.timedelta(hours=hour),
                "Dimensions": [{"Name": "AutoScalingGroupName", "Value": group_name(spec)}]}])
        check_report(spec, usage_tool.report(spec, usage_tool.aws_monitored(spec, START, END, cloudwatch),
                                             START, END))
        # the command itself, as make usage runs it, over a period back from now that holds the data
        days = (dt.datetime.now(dt.timezone.utc) - START).days + 1
        out = io.StringIO()
        with redirect_stdout(out):
            assert usage_tool.main(["codellama-dev", "--since", f"{days}d", "--format", "json"]) == 0
        check_report(spec, json.loads(out.getvalue()))
        out = io.StringIO()
        with redirect_stdout(out):
            assert usage_tool.main(["codellama-dev", "--since", "2h"]) == 0  # nothing in the last 2 hours
        assert "no key made a request in the period" in out.getvalue()


def _recorded(answers):
    """A GET that answers each request with the first recorded answer whose test matches its URL, and keeps the
    URLs asked."""
    asked = []

    def get(url: str) -> dict:
        asked.append(url)
        for test, answer in answers:
            if test(url):
                return answer
        raise AssertionError(f"no recorded answer for {url}")

    return get, asked


def _query(url: str) -> dict[str, list[str]]:
    return urllib.parse.parse_qs(urllib.parse.urlsplit(url).query)


def counted(counter: usage.KeyCounter, key: str) -> int:
    """What the VMs counted of `counter` for `key` (ERRORS: of its one status)."""
    requests, prompt, completion, errors = COUNTED[key]
    if counter is usage.ERRORS:
        return next(iter(errors.values()))
    return {usage.REQUESTS: requests, usage.PROMPT_TOKENS: prompt, usage.COMPLETION_TOKENS: completion}[counter]


def status_of(key: str) -> str:
    return next(iter(COUNTED[key][3]))


def test_make_usage_on_gcp_reads_cloud_monitoring():
    spec = stack_spec("codellama-gcp")

    def points(*values, kind="int64Value"):
        # timeSeries.list's TimeSeries: points of the aligned periods, int64 values as strings
        return [{"interval": {"startTime": "2026-12-01T00:00:00Z", "endTime": "2026-12-01T01:00:00Z"},
                 "value": {kind: str(v) if kind == "int64Value" else v}} for v in values]

    def series(counter):
        return {"timeSeries": [{
            "metric": {"type": usage.metric_name("gcp", counter),
                       "labels": {"key": key, **({"status": status_of(key)} if counter is usage.ERRORS else {})}},
            "resource": {"type": "prometheus_target",
                         "labels": {"project_id": "my-project-123", "job": "vllm-fleet-codellama-gcp"}},
            "metricKind": "DELTA", "valueType": "INT64",
            "points": points(counted(counter, key) // 2, counted(counter, key) - counted(counter, key) // 2)}
            for key in COUNTED]}

    uptime = {"timeSeries": [{"metric": {"type": "compute.googleapis.com/instance/uptime"},
                              "resource": {"type": "gce_instance", "labels": {"project_id": "my-project-123"}},
                              "metricKind": "DELTA", "valueType": "DOUBLE",
                              "points": points(*(vms * 3600.0 for vms in VMS_HOURLY), kind="doubleValue")}],
              "nextPageToken": "page-2"}

    def filtered(metric):
        return lambda url: f'metric.type="{metric}"' in _query(url)["filter"][0]

    get, asked = _recorded([
        (lambda url: "pageToken" in _query(url), {"timeSeries": []}),
        *((filtered(usage.metric_name("gcp", c)), series(c)) for c in usage.KEY_COUNTERS),
        (filtered("compute.googleapis.com/instance/uptime"), uptime)])
    check_report(spec, usage_tool.report(spec, usage_tool.gcp_monitored(spec, START, END, get), START, END))
    first = _query(asked[0])
    assert urllib.parse.urlsplit(asked[0]).path == f"/v3/projects/{spec.cloud_options['project']}/timeSeries"
    assert f'metric.label.stack="{spec.stack}"' in first["filter"][0]
    assert first["interval.startTime"] == ["2026-11-30T12:00:00Z"]
    assert first["interval.endTime"] == ["2026-12-07T12:00:00Z"]
    assert first["aggregation.perSeriesAligner"] == ["ALIGN_DELTA"]
    assert first["aggregation.crossSeriesReducer"] == ["REDUCE_SUM"]
    assert first["aggregation.groupByFields"] == ["metric.label.key"]
    assert 'metadata.user_labels."vllm-fleet-stack"="codellama-gcp"' in _query(asked[-2])["filter"][0]
    assert _query(asked[-1])["pageToken"] == ["page-2"]  # the next page asked for, and added


def test_make_usage_on_azure_reads_azure_monitor():
    spec = stack_spec("codellama-azure")
    scale_set = ("/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/rg-codellama-azure/providers/"
                 "Microsoft.Compute/virtualMachineScaleSets/codellama-azure-gpu")

    def metric(counter):
        # Metrics - List (api-version 2023-10-01): value[].timeseries[].metadatavalues and data[].total
        name = usage.metric_name("azure", counter)
        return {"name": {"value": name, "localizedValue": name}, "unit": "Count",
                "timeseries": [{"metadatavalues": [{"name": {"value": "key"}, "value": key}] + (
                    [{"name": {"value": "status"}, "value": status_of(key)}] if counter is usage.ERRORS else []),
                    "data": [{"timeStamp": "2026-12-01T00:00:00Z", "total": counted(counter, key)}]}
                    for key in COUNTED]}

    counters = {"value": [metric(c) for c in usage.KEY_COUNTERS if c is not usage.ERRORS]}
    errors = {"value": [metric(usage.ERRORS)]}
    cpu = {"value": [{"name": {"value": "Percentage CPU"}, "unit": "Percent", "timeseries": [{
        "metadatavalues": [], "data": [{"timeStamp": "2026-12-01T00:00:00Z", "count": vms * 60.0}
                                       for vms in VMS_HOURLY]}]}]}
    resources = {"value": [
        {"id": scale_set, "name": "codellama-azure-gpu", "type": "Microsoft.Compute/virtualMachineScaleSets"},
        {"id": scale_set.replace("virtualMachineScaleSets/codellama-azure-gpu", "applicationGateways/gw"),
         "name": "gw", "type": "Microsoft.Network/applicationGateways"}]}
    get, asked = _recorded([
        (lambda url: "/resources?" in url, resources),
        (lambda url: _query(url).get("metricnames") == ["Percentage CPU"], cpu),
        (lambda url: "status eq" in _query(url).get("$filter", [""])[0], errors),
        (lambda url: _query(url).get("metricnamespace") == [usage.MONITORING["azure"]["namespace"]], counters)])
    check_report(spec, usage_tool.report(
        spec, usage_tool.azure_monitored(spec, START, END, get, "00000000-0000-0000-0000-000000000000"), START, END))
    assert "tagName eq 'vllm-fleet-stack' and tagValue eq 'codellama-azure'" in _query(asked[0])["$filter"][0]
    counted_query = _query(asked[1])
    assert urllib.parse.urlsplit(asked[1]).path == f"{scale_set}/providers/Microsoft.Insights/metrics"
    assert counted_query["aggregation"] == ["Total"] and counted_query["$filter"] == ["key eq '*'"]
    assert counted_query["timespan"] == ["2026-11-30T12:00:00Z/2026-12-07T12:00:00Z"]


@pytest.mark.parametrize("text", ["7", "0d", "1w", "-3d", "h"])
def test_since_takes_days_or_hours(text):
    with pytest.raises(ConfigError, match="SINCE"):
        usage_tool.since_seconds(text)
    assert usage_tool.since_seconds("36h") == 36 * 3600 and usage_tool.since_seconds("7d") == 7 * 86400
