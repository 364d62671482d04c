"""`make usage STACK=<stack> [SINCE=7d] [FORMAT=json]`: who used the fleet, and what that cost. Per API key (its name):
requests, errors, prompt and completion tokens, its share of the fleet's GPU hours and of their cost, and dollars per
million tokens, over the last SINCE (7d, 36h, ...).

It reads the cloud's monitoring with the user's own credentials:
- the per-key counters every VM exposes on /metrics (fleet/usage.py KEY_COUNTERS), as the metric shipping writes
  them (fleet/usage.py MONITORING: names, dimensions);
- how many VMs served, hour by hour: AWS, the Auto Scaling group's GroupInServiceInstances (the group collects it);
  GCP, compute.googleapis.com/instance/uptime of the VMs labelled with the stack; Azure, the number of the scale
  set's per-minute Percentage CPU samples (one per VM a minute).
The cost is those VM hours at the on-demand price the plan uses (catalog/prices.yaml), shared out by tokens (prompt
and completion alike). AWS goes through boto3's CloudWatch GetMetricData; GCP through Cloud Monitoring's
timeSeries.list and Azure through Azure Monitor's metrics API, with the token of `gcloud auth print-access-token` /
`az account get-access-token` (or GCP_ACCESS_TOKEN / AZURE_ACCESS_TOKEN).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import re
import subprocess
import sys
import urllib.parse
import urllib.request
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any, Callable

from fleet import catalog, usage
from fleet.errors import ConfigError
from fleet.sizing import size
from fleet.spec import FleetSpec

_SINCE = re.compile(r"^(\d+)([dh])$")
HOUR = 3600
GetJson = Callable[[str], dict[str, Any]]  # GET an https URL with the user's token, the JSON answer


@dataclass
class KeyUsage:
    requests: float = 0
    prompt_tokens: float = 0
    completion_tokens: float = 0
    errors: dict[str, float] = field(default_factory=dict)  # HTTP status -> requests

    @property
    def tokens(self) -> float:
        return self.prompt_tokens + self.completion_tokens

    def add(self, counter: usage.KeyCounter, value: float, status: str | None = None) -> None:
        if counter is usage.ERRORS:
            self.errors[str(status)] = self.errors.get(str(status), 0) + value
        else:
            attribute = {usage.REQUESTS: "requests", usage.PROMPT_TOKENS: "prompt_tokens",
                         usage.COMPLETION_TOKENS: "completion_tokens"}[counter]
            setattr(self, attribute, getattr(self, attribute) + value)


@dataclass
class Monitored:
    keys: dict[str, KeyUsage]
    vm_hours: float


def since_seconds(text: str) -> int:
    match = _SINCE.match(text)
    if not match or int(match[1]) == 0:
        raise ConfigError("SINCE", text, "a period back from now: a number of days or hours, e.g. 7d or 36h")
    return int(match[1]) * (86400 if match[2] == "d" else HOUR)


def _counter(name: str) -> usage.KeyCounter:
    """The counter of an Azure custom metric's name."""
    return next(c for c in usage.KEY_COUNTERS if usage.metric_name("azure", c) == name)


# --- AWS: CloudWatch --------------------------------------------------------------------------------------------
def aws_monitored(spec: FleetSpec, start: dt.datetime, end: dt.datetime, cloudwatch) -> Monitored:
    """`cloudwatch`: a boto3 CloudWatch client of the stack's region."""
    from components.aws.fleet import group_name

    names = usage.MONITORING["aws"]
    found = {}  # (counter, key, status) -> the metric (ListMetrics may list one more than once)
    for counter in usage.KEY_COUNTERS:
        for page in cloudwatch.get_paginator("list_metrics").paginate(
                Namespace=names["namespace"], MetricName=usage.metric_name("aws", counter),
                Dimensions=[{"Name": names["stack"], "Value": spec.stack}]):
            for metric in page["Metrics"]:
                dims = {d["Name"]: d["Value"] for d in metric["Dimensions"]}
                found[counter, dims[names["key"]], dims.get(names["status"])] = metric
    metrics = [(counter, key, status, metric, "Sum") for (counter, key, status), metric in found.items()]
    metrics.append((None, None, None, {"Namespace": "AWS/AutoScaling", "MetricName": "GroupInServiceInstances",
                                       "Dimensions": [{"Name": "AutoScalingGroupName", "Value": group_name(spec)}]},
                    "Average"))
    sums: dict[str, float] = defaultdict(float)
    for first in range(0, len(metrics), 500):  # GetMetricData takes 500 queries at most
        queries = [{"Id": f"m{first + i}", "ReturnData": True,
                    "MetricStat": {"Metric": metric, "Period": HOUR, "Stat": stat}}
                   for i, (_, _, _, metric, stat) in enumerate(metrics[first:first + 500])]
        for page in cloudwatch.get_paginator("get_metric_data").paginate(
                MetricDataQueries=queries, StartTime=start, EndTime=end):
            for result in page["MetricDataResults"]:
                sums[result["Id"]] += sum(result["Values"])
    keys: dict[str, KeyUsage] = defaultdict(KeyUsage)
    for index, (counter, key, status, _, _) in enumerate(metrics[:-1]):
        keys[key].add(counter, sums[f"m{index}"], status)
    return Monitored(dict(keys), sums[f"m{len(metrics) - 1}"])  # hourly averages of VMs: VM hours


# --- GCP: Cloud Monitoring timeSeries.list ---------------------------------------------------------------------
def _gcp_series(get: GetJson, project: str, metric_filter: str, start: dt.datetime, end: dt.datetime,
                aligner: str, group_by: list[str]) -> list[dict[str, Any]]:
    params = [("filter", metric_filter), ("interval.startTime", _rfc3339(start)),
              ("interval.endTime", _rfc3339(end)), ("aggregation.alignmentPeriod", f"{HOUR}s"),
              ("aggregation.perSeriesAligner", aligner), ("aggregation.crossSeriesReducer", "REDUCE_SUM"),
              *(("aggregation.groupByFields", f) for f in group_by)]
    series, token = [], None
    while True:
        query = urllib.parse.urlencode(params + ([("pageToken", token)] if token else []))
        answer = get(f"https://monitoring.googleapis.com/v3/projects/{project}/timeSeries?{query}")
        series += answer.get("timeSeries", [])
        token = answer.get("nextPageToken")
        if not token:
            return series


def _gcp_value(point: dict[str, Any]) -> float:
    value = point["value"]
    return float(value.get("int64Value", value.get("doubleValue", 0)))


def gcp_monitored(spec: FleetSpec, start: dt.datetime, end: dt.datetime, get: GetJson) -> Monitored:
    from components.gcp.options import label_value

    names = usage.MONITORING["gcp"]
    project = spec.cloud_options["project"]
    stack = f'metric.label.{names["stack"]}="{spec.stack}"'
    keys: dict[str, KeyUsage] = defaultdict(KeyUsage)
    for counter in usage.KEY_COUNTERS:
        group_by = [f"metric.label.{names['key']}"] + (
            [f"metric.label.{names['status']}"] if counter is usage.ERRORS else [])
        for series in _gcp_series(get, project, f'metric.type="{usage.metric_name("gcp", counter)}" AND {stack}',
                                  start, end, "ALIGN_DELTA", group_by):
            labels = series["metric"].get("labels", {})
            keys[labels[names["key"]]].add(counter, sum(map(_gcp_value, series.get("points", []))),
                                           labels.get(names["status"]))
    uptime = _gcp_series(get, project, 'metric.type="compute.googleapis.com/instance/uptime" AND '
                                       f'metadata.user_labels."vllm-fleet-stack"="{label_value(spec.stack)}"',
                         start, end, "ALIGN_SUM", [])
    seconds = sum(_gcp_value(point) for series in uptime for point in series.get("points", []))
    return Monitored(dict(keys), seconds / HOUR)


# --- Azure: Azure Monitor metrics ------------------------------------------------------------------------------
ARM = "https://management.azure.com"


def _azure_metrics(get: GetJson, resource: str, namespace: str, metrics: list[str], start: dt.datetime,
                   end: dt.datetime, aggregation: str, dimensions: list[str]) -> list[dict[str, Any]]:
    params = {"api-version": "2023-10-01", "metricnamespace": namespace, "metricnames": ",".join(metrics),
              "timespan": f"{_rfc3339(start)}/{_rfc3339(end)}", "interval": "PT1H", "aggregation": aggregation}
    if dimensions:
        params["$filter"] = " and ".join(f"{d} eq '*'" for d in dimensions)
    return get(f"{ARM}{resource}/providers/Microsoft.Insights/metrics?{urllib.parse.urlencode(params)}")["value"]


def azure_monitored(spec: FleetSpec, start: dt.datetime, end: dt.datetime, get: GetJson,
                    subscription: str) -> Monitored:
    names = usage.MONITORING["azure"]
    query = urllib.parse.urlencode({"api-version": "2021-04-01",
                                    "$filter": f"tagName eq 'vllm-fleet-stack' and tagValue eq '{spec.stack}'"})
    found = get(f"{ARM}/subscriptions/{subscription}/resources?{query}")["value"]
    sets = [r["id"] for r in found if r["type"].lower() == "microsoft.compute/virtualmachinescalesets"]
    if len(sets) != 1:
        raise SystemExit(f"make usage: expected one scale set tagged vllm-fleet-stack={spec.stack} in subscription "
                         f"{subscription}, found {len(sets)}")
    [scale_set] = sets
    keys: dict[str, KeyUsage] = defaultdict(KeyUsage)
    for counters, dimensions in (([c for c in usage.KEY_COUNTERS if c is not usage.ERRORS], [names["key"]]),
                                 ([usage.ERRORS], [names["key"], names["status"]])):
        for metric in _azure_metrics(get, scale_set, names["namespace"], [usage.metric_name("azure", c) for c in counters], start, end,
                                     "Total", dimensions):
            counter = _counter(metric["name"]["value"])
            for series in metric["timeseries"]:
                labels = {m["name"]["value"]: m["value"] for m in series.get("metadatavalues", [])}
                keys[labels[names["key"]]].add(counter, sum(d.get("total") or 0 for d in series["data"]),
                                               labels.get(names["status"]))
    [cpu] = _azure_metrics(get, scale_set, "microsoft.compute/virtualmachinescalesets", ["Percentage CPU"],
                           start, end, "Count", [])
    samples = sum(d.get("count") or 0 for series in cpu["timeseries"] for d in series["data"])
    return Monitored(dict(keys), samples / 60)  # one sample a VM a minute


# --- the report ------------------------------------------------------------------------------------------------
def report(spec: FleetSpec, monitored: Monitored, start: dt.datetime, end: dt.datetime) -> dict[str, Any]:
    sizing = size(spec)
    price = sizing.price or catalog.cloud(spec.cloud).price(sizing.instance, spec.region)
    gpus = sizing.instance.gpu_count
    cost = monitored.vm_hours * price.usd_per_hour
    total = sum(k.tokens for k in monitored.keys.values())

    def row(name: str, k: KeyUsage) -> dict[str, Any]:
        share = k.tokens / total if total else 0.0
        return {"key": name, "requests": int(k.requests), "errors": {s: int(n) for s, n in sorted(k.errors.items())},
                "promptTokens": int(k.prompt_tokens), "completionTokens": int(k.completion_tokens),
                "tokenShare": round(share, 4), "gpuHours": round(share * monitored.vm_hours * gpus, 2),
                "usd": round(share * cost, 2),
                "usdPerMillionTokens": round(share * cost / k.tokens * 1e6, 4) if k.tokens else None}

    return {"stack": spec.stack, "cloud": spec.cloud, "from": _rfc3339(start), "to": _rfc3339(end),
            "instanceType": sizing.instance.name, "gpusPerVm": gpus, "usdPerVmHour": price.usd_per_hour,
            "priceBasis": f"on-demand {sizing.instance.name} in {price.region}, prices of {price.as_of}",
            "vmHours": round(monitored.vm_hours, 2), "gpuHours": round(monitored.vm_hours * gpus, 2),
            "usd": round(cost, 2), "tokens": int(total),
            "usdPerMillionTokens": round(cost / total * 1e6, 4) if total else None,
            "keys": [row(name, k) for name, k in sorted(monitored.keys.items(), key=lambda kv: -kv[1].tokens)
                     if k.requests or k.tokens]}  # the keys used in the period


def render_text(result: dict[str, Any]) -> str:
    lines = [f"{result['stack']} ({result['cloud']}), {result['from']} to {result['to']}: {result['vmHours']} VM "
             f"hours = {result['gpuHours']} GPU hours of {result['instanceType']}, ${result['usd']:,.2f} "
             f"({result['priceBasis']}, ${result['usdPerVmHour']:.2f}/hour a VM); {result['tokens']:,} tokens"]
    header = ("key", "requests", "errors", "prompt tok", "completion tok", "share", "GPU h", "$", "$/M tok")
    rows = [header] + [(k["key"], f"{k['requests']:,}", ",".join(f"{s}:{n}" for s, n in k["errors"].items()) or "-",
                        f"{k['promptTokens']:,}", f"{k['completionTokens']:,}", f"{k['tokenShare']:.1%}",
                        f"{k['gpuHours']:.2f}", f"{k['usd']:,.2f}",
                        "-" if k["usdPerMillionTokens"] is None else f"{k['usdPerMillionTokens']:.2f}")
                       for k in result["keys"]]
    widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
    lines += ["  ".join(cell.ljust(w) if i == 0 else cell.rjust(w) for i, (cell, w) in enumerate(zip(r, widths)))
              for r in rows]
    if not result["keys"]:
        lines.append("(no key made a request in the period; none at all: are the VMs' metrics shipped? docs/usage.md)")
    lines.append("Cost shared out by tokens (prompt and completion alike); load balancer, disks and traffic extra.")
    return "\n".join(lines)


def _rfc3339(moment: dt.datetime) -> str:
    return moment.astimezone(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _token(variable: str, command: list[str]) -> str:
    if os.environ.get(variable):
        return os.environ[variable]
    try:
        return subprocess.run(command, capture_output=True, text=True, check=True).stdout.strip()
    except (FileNotFoundError, subprocess.CalledProcessError) as error:
        raise SystemExit(f"make usage: no access token: set {variable} or log in ({' '.join(command)}): {error}")


def _http_get(token: str) -> GetJson:
    def get(url: str) -> dict[str, Any]:
        request = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"})
        with urllib.request.urlopen(request, timeout=60) as response:
            return json.load(response)

    return get


def monitored_of(spec: FleetSpec, start: dt.datetime, end: dt.datetime) -> Monitored:
    if spec.cloud == "aws":
        import boto3

        return aws_monitored(spec, start, end, boto3.client("cloudwatch", region_name=spec.region))
    if spec.cloud == "gcp":
        get = _http_get(_token("GCP_ACCESS_TOKEN", ["gcloud", "auth", "print-access-token"]))
        return gcp_monitored(spec, start, end, get)
    get = _http_get(_token("AZURE_ACCESS_TOKEN", ["az", "account", "get-access-token", "--resource", ARM,
                                                  "--query", "accessToken", "-o", "tsv"]))
    subscription = os.environ.get("AZURE_SUBSCRIPTION_ID") or _token(
        "AZURE_SUBSCRIPTION_ID", ["az", "account", "show", "--query", "id", "-o", "tsv"])
    return azure_monitored(spec, start, end, get, subscription)


def main(argv: list[str] | None = None) -> int:
    from .plan import stack_spec

    parser = argparse.ArgumentParser(prog="make usage", description=__doc__.split("\n\n")[0])
    parser.add_argument("stack")
    parser.add_argument("--since", default="7d", help="the period back from now: 7d, 36h (default 7d)")
    parser.add_argument("--format", choices=("text", "json"), default="text")
    args = parser.parse_args(argv)
    try:
        spec = stack_spec(args.stack)
        end = dt.datetime.now(dt.timezone.utc).replace(minute=0, second=0, microsecond=0)
        start = end - dt.timedelta(seconds=since_seconds(args.since))
    except ConfigError as error:
        print(f"make usage: {error}", file=sys.stderr)
        return 2
    result = report(spec, monitored_of(spec, start, end), start, end)
    print(json.dumps(result, indent=2) if args.format == "json" else render_text(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
