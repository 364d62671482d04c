"""The stack's dashboard and alarms (fleet/dashboard.py, fleet/alerts.py; components/<cloud>/dashboard.py) as every
stack plans them: each panel of the one list on each cloud's dashboard (or a note of why the cloud lacks it), the
alarms notifying the alerts key's targets, the dashboard's URL as a stack output, and the alerts key's errors."""

from __future__ import annotations

import json

import pytest

from components.aws import dashboard as aws_dashboard
from components.azure import dashboard as azure_dashboard
from conftest import config_of, run_plan, stacks_of
from fleet import alerts, dashboard, usage
from test_spec import error_of, parse

ALARM_COUNT = {"aws": 3, "gcp": 4, "azure": 3}  # AWS and Azure keep no histograms: no TTFT alarm


@pytest.mark.parametrize("changes, key, words", [
    ({"alerts": {"email": "not-an-address"}}, "alerts.email", "one email address"),
    ({"alerts": {"errorsPerMinute": 3}}, "alerts", "names no one to notify"),
    ({"alerts": {"email": "a@example.com", "ttftP95Seconds": 0}}, "alerts.ttftP95Seconds", "0.05 to 600"),
    ({"alerts": {"email": "a@example.com", "errorsPerMinute": -1}}, "alerts.errorsPerMinute", "whole number"),
    ({"alerts": {"topic": "projects/p/notificationChannels/1"}}, "alerts.topic", "on aws must be an SNS topic ARN"),
    ({"alerts": {"mail": "a@example.com"}}, "alerts", "must be a map {email, topic"),
])
def test_bad_alerts_values_name_the_key_and_what_works(changes, key, words):
    error = error_of(**changes)
    assert error.key == key and words in error.expected


def test_each_cloud_takes_its_own_kind_of_topic():
    assert parse(alerts={"topic": "arn:aws:sns:us-east-1:123456789012:oncall"}).alerts.notifies
    gcp = parse(cloud="gcp", region="us-central1", gcp={"project": "my-project-123"},
                alerts={"topic": "projects/my-project-123/notificationChannels/42", "ttftP95Seconds": 2})
    assert gcp.alerts.ttft_p95_seconds == 2.0 and gcp.alerts.errors_per_minute == alerts.DEFAULT_ERRORS_PER_MINUTE


def test_the_panels_read_every_metric_shipped_and_known_signals_only():
    from fleet import metrics

    assert dashboard.referenced_metrics() == set(metrics.BY_KEY)
    assert all(s.metric or s.key_counter or s.source in dashboard.SIGNALS for p in dashboard.PANELS for s in p.series)
    # tokens by key: the per-key token counters, one line a key
    by_key = {s.key_counter for p in dashboard.PANELS for s in p.series if s.key_counter}
    assert by_key == {usage.PROMPT_TOKENS, usage.COMPLETION_TOKENS}
    assert all(s.stat == "sum_by_key" for p in dashboard.PANELS for s in p.series if s.key_counter)
    assert all(s.stat in dashboard.STATS for p in dashboard.PANELS for s in p.series)


def _title(counter) -> str:
    [panel] = [p for p in dashboard.PANELS if any(s.key_counter is counter for s in p.series)]
    return panel.title


@pytest.mark.parametrize("stack", stacks_of("aws"))
def test_aws_dashboard_has_every_panel_and_the_alarms_notify(stack, plan_of):
    plan = plan_of(stack)
    [board] = plan.resources("aws:cloudwatch/dashboard:Dashboard")
    widgets = json.loads(board["dashboardBody"])["widgets"]
    assert [w["properties"]["title"] if w["type"] == "metric" else w["properties"]["markdown"].splitlines()[0]
            for w in widgets] == [f"{p.title} ({p.unit})" if "Time" not in p.title else f"## {p.title}"
                                  for p in dashboard.PANELS]
    assert {w["type"] for w in widgets if "Time to first token" in json.dumps(w)} == {"text"}  # no histograms
    # tokens by key: a search over the stack's counters under the name and dimensions make usage reads
    names = usage.MONITORING["aws"]
    for counter in (usage.PROMPT_TOKENS, usage.COMPLETION_TOKENS):
        [widget] = [w for w in widgets if w["properties"].get("title", "").startswith(f"{_title(counter)} ")]
        [[entry]] = widget["properties"]["metrics"]
        assert entry["expression"] == (
            f"SEARCH('{{{names['namespace']},{names['stack']},{names['key']}}} MetricName=\"{counter.name}\" "
            f"{names['stack']}=\"{stack}\"', 'Sum', 60)")
        assert entry["label"].startswith("${PROP('Dim.key')} ")
    region = config_of(stack)["region"]
    assert plan.outputs["dashboard"] == (f"https://{region}.console.aws.amazon.com/cloudwatch/home?region={region}"
                                         f"#dashboards/dashboard/vllm-fleet-{stack}")
    alarms = plan.resources("aws:cloudwatch/metricAlarm:MetricAlarm")
    assert len(alarms) == ALARM_COUNT["aws"]
    group = plan.one("aws:autoscaling/group:Group")
    assert set(group["enabledMetrics"]) == set(aws_dashboard.GROUP_METRICS.values())
    email = config_of(stack).get("alerts", {}).get("email")
    assert len(plan.resources("aws:sns/topicSubscription:TopicSubscription")) == (1 if email else 0)
    assert all(a["alarmActions"] == a["okActions"] for a in alarms)


@pytest.mark.parametrize("stack", stacks_of("gcp"))
def test_gcp_dashboard_runs_promql_for_every_panel_and_the_alert_policies(stack, plan_of):
    plan = plan_of(stack)
    [board] = plan.resources("gcp:monitoring/dashboard:Dashboard")
    tiles = json.loads(board["dashboardJson"])["mosaicLayout"]["tiles"]
    assert [t["widget"]["title"] for t in tiles] == [f"{p.title} ({p.unit})" for p in dashboard.PANELS]
    queries = [d["timeSeriesQuery"]["prometheusQuery"] for t in tiles for d in t["widget"]["xyChart"]["dataSets"]]
    assert all(f'job="vllm-fleet-{stack}"' in q or "instance_group_size" in q or "https_request_count" in q
               for q in queries)
    assert any(q.startswith("histogram_quantile(0.95,") for q in queries)
    # tokens by key: one line a key, of the stack's job, legend by the key label
    for counter in (usage.PROMPT_TOKENS, usage.COMPLETION_TOKENS):
        [tile] = [t for t in tiles if t["widget"]["title"].startswith(f"{_title(counter)} ")]
        [data] = tile["widget"]["xyChart"]["dataSets"]
        assert data["timeSeriesQuery"]["prometheusQuery"] == (
            f'sum by (key) (rate({counter.name}{{job="vllm-fleet-{stack}"}}[5m])) * 60')
        assert data["legendTemplate"].startswith("${metric.labels.key} ")
    policies = plan.resources("gcp:monitoring/alertPolicy:AlertPolicy")
    pool = plan.outputs.get("officeHours", {}).get("standbyPool")
    assert len(policies) == ALARM_COUNT["gcp"] - (1 if pool else 0)
    assert all(c["conditionPrometheusQueryLanguage"]["query"] for p in policies for c in p["conditions"])
    assert plan.outputs["dashboard"].startswith("https://console.cloud.google.com/monitoring/dashboards/custom/")


@pytest.mark.parametrize("stack", stacks_of("azure"))
def test_azure_portal_dashboard_and_metric_alerts_on_the_gateway(stack, plan_of):
    plan = plan_of(stack)
    [board] = plan.resources("azure-native:portal:Dashboard")
    parts = board["properties"]["lenses"][0]["parts"]
    assert len(parts) == len(dashboard.PANELS)
    kinds = [p["metadata"]["type"].rsplit("/", 1)[1] for p in parts]
    titles = [p.title for p in dashboard.PANELS]
    assert kinds[titles.index("Time to first token")] == "MarkdownPart"
    assert kinds[titles.index("Requests waiting and running (average a VM)")] == "MonitorChartPart"
    # tokens by key: the scale set's custom metric make usage reads, its sum split by the key dimension
    for counter in (usage.PROMPT_TOKENS, usage.COMPLETION_TOKENS):
        chart = parts[titles.index(_title(counter))]["metadata"]["inputs"][0]["value"]["chart"]
        [metric] = chart["metrics"]
        assert (metric["namespace"], metric["name"]) == (usage.MONITORING["azure"]["namespace"],
                                                         usage.metric_name("azure", counter))
        assert metric["aggregationType"] == azure_dashboard.AGGREGATIONS["sum"]
        assert chart["grouping"] == {"dimension": "key"} and "time grain" in chart["title"]
    hours = config_of(stack).get("officeHours")
    expected = ALARM_COUNT["azure"] - (1 if hours and hours.get("offHoursReplicas", 0) == 0 else 0)
    alarms = plan.resources("azure-native:monitor:MetricAlert")
    assert len(alarms) == expected
    assert all(a["criteria"]["allOf"][0]["metricNamespace"] == azure_dashboard.GATEWAY for a in alarms)
    assert plan.outputs["dashboard"].startswith("https://portal.azure.com/#@/dashboard/arm")


def test_an_email_makes_a_topic_and_a_subscription(stack_file):
    result = run_plan(stack_file({**config_of("codellama-dev"), "alerts": {"email": "oncall@example.com"}}))
    assert result.returncode == 0, result.stderr
    steps = json.loads(result.stdout)["steps"]
    [subscription] = [s["newState"]["inputs"] for s in steps if s["type"] == "aws:sns/topicSubscription:TopicSubscription"]
    assert subscription["protocol"] == "email" and subscription["endpoint"] == "oncall@example.com"
    alarms = [s["newState"]["inputs"] for s in steps if s["type"] == "aws:cloudwatch/metricAlarm:MetricAlarm"]
    assert all(len(a["alarmActions"]) == 1 for a in alarms)
