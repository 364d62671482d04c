"""The stack's Azure portal dashboard (fleet/dashboard.py's panels, as metrics chart parts) and metric alerts
(fleet/alerts.py), notifying an action group of the stack's (alerts.email) and alerts.topic (an existing one).

vLLM's metrics are the scale set's custom metrics that Telegraf publishes (monitoring.py), the sizes the autoscale
setting's ObservedCapacity, answers and healthy VMs the Application Gateway's metrics. Azure Monitor keeps no
histograms and no metric math: the TTFT and TPOT panels say so, there is no TTFT alarm, and the cost panel states
the price a VM (docs/autoscaling.md). A metric alert reads one resource: the no-healthy-VM alarm is left out where
office hours scale the fleet to no VM (it would fire every night)."""

from __future__ import annotations

import pulumi
from pulumi_azure_native import monitor, portal

from components.base import FleetComponent
from fleet import alerts, dashboard, usage
from fleet.sizing import Sizing
from fleet.spec import FleetSpec

from . import monitoring

GATEWAY = "Microsoft.Network/applicationGateways"
AUTOSCALE = "microsoft.insights/autoscalesettings"
# The metrics chart part's aggregation codes (the portal's): 1 sum, 3 max, 4 average.
AGGREGATIONS = {"sum": 1, "max": 3, "avg": 4, "rate": 4, "sum_by_key": 1}
WIDTH, HEIGHT, COLUMNS = 6, 4, 2
# The windows a metric alert takes, in minutes.
ALERT_WINDOWS = (1, 5, 15, 30, 60, 360, 720, 1440)
NOT_ON_AZURE = {
    "histogram": "Azure Monitor keeps no histograms: vLLM's {title} stays on the VM's /metrics (docs/autoscaling.md).",
    "cost_per_hour": "Azure dashboards do no metric math: the GPU VMs cost ${price:.2f} an hour each; the Replicas "
                     "panel shows how many run.",
}


def _metric(series: dashboard.Series, ids: dict[str, str]) -> dict | None:
    """A chart part's metric of one series, or None where Azure lacks it."""
    metric = series.metric
    if series.key_counter is not None:
        found = (ids["scale_set"], monitoring.NAMESPACE, usage.metric_name("azure", series.key_counter), None)
    elif metric is not None:
        if metric not in monitoring.SHIPPED:
            return None
        found = (ids["scale_set"], monitoring.NAMESPACE, monitoring.metric_name(metric), None)
    else:
        found = {
            "replicas_desired": (ids["autoscale"], AUTOSCALE, "ObservedCapacity", None),
            "replicas_in_service": (ids["gateway"], GATEWAY, "HealthyHostCount", None),
            "healthy_vms": (ids["gateway"], GATEWAY, "HealthyHostCount", None),
            "unhealthy_vms": (ids["gateway"], GATEWAY, "UnhealthyHostCount", None),
            "lb_4xx": (ids["gateway"], GATEWAY, "ResponseStatus", "4xx"),
            "lb_5xx": (ids["gateway"], GATEWAY, "ResponseStatus", "5xx"),
        }.get(series.source)
        if found is None:  # replicas_starting, cost_per_hour: no metric math
            return None
    resource, namespace, name, status = found
    entry = {"resourceMetadata": {"id": resource}, "name": name, "namespace": namespace,
             "aggregationType": AGGREGATIONS[series.stat], "metricVisualization": {"displayName": series.label}}
    if status:
        entry["filter"] = {"key": "HttpStatusGroup", "operator": 0, "values": [status]}
    return entry


def parts(spec: FleetSpec, ids: dict[str, str], price: float) -> list[dict]:
    found = []
    for number, panel in enumerate(dashboard.PANELS):
        position = {"x": (number % COLUMNS) * WIDTH, "y": (number // COLUMNS) * HEIGHT, "colSpan": WIDTH,
                    "rowSpan": HEIGHT}
        chart = [m for m in (_metric(series, ids) for series in panel.series) if m]
        by_key = any(series.key_counter for series in panel.series)
        if chart:
            # A chart of one metric splits by one of its dimensions, and sums a key's increases over its time grain
            # (the portal picks it from the time range, no metric math): the per-key panels' unit says so.
            options = {"grouping": {"dimension": usage.MONITORING["azure"]["key"]}} if by_key else {}
            unit = "tokens a time grain of the chart" if by_key else panel.unit
            metadata = {"type": "Extension/HubsExtension/PartType/MonitorChartPart", "inputs": [{
                "name": "options", "value": {"chart": {"title": f"{panel.title} ({unit})", "metrics": chart, **options,
                                                       "visualization": {"chartType": 2},
                                                       "timespan": {"relative": {"duration": 86400000}}}}}]}
        else:
            kind = "histogram" if any(s.metric for s in panel.series) else "cost_per_hour"
            metadata = {"type": "Extension/HubsExtension/PartType/MarkdownPart", "inputs": [], "settings": {
                "content": {"settings": {"title": panel.title, "content": NOT_ON_AZURE[kind].format(
                    title=panel.title.lower(), price=price)}}}}
        found.append({"position": position, "metadata": metadata})
    return found


def create(fleet: FleetComponent, spec: FleetSpec, sizing: Sizing, group, scale_set, gateway, setting) -> None:
    price = sizing.instance.usd_per_hour
    ids = pulumi.Output.all(scale_set=scale_set.id, gateway=gateway.id, autoscale=setting.id)
    board = portal.Dashboard(
        fleet.child("dashboard"), resource_group_name=group, location=spec.region, tags=fleet.tags,
        properties=portal.DashboardPropertiesWithProvisioningStateArgs(
            lenses=[portal.DashboardLensArgs(order=0, parts=ids.apply(lambda found: parts(spec, found, price)))],
            metadata={"model": {"timeRange": {"value": {"relative": {"duration": 24, "timeUnit": 1}},
                                              "type": "MsPortalFx.Composition.Configuration.ValueTypes.TimeRange"}}}),
        opts=fleet.opts)
    fleet.dashboard_url = pulumi.Output.concat("https://portal.azure.com/#@/dashboard/arm", board.id)
    _alarms(fleet, spec, sizing, group, gateway)


def _window(minutes: int) -> str:
    fitting = next((w for w in ALERT_WINDOWS if w >= minutes), ALERT_WINDOWS[-1])
    return f"PT{fitting}M" if fitting < 60 else f"PT{fitting // 60}H" if fitting < 1440 else "P1D"


def _alarms(fleet: FleetComponent, spec: FleetSpec, sizing: Sizing, group, gateway) -> None:
    config = spec.alerts
    groups: list[pulumi.Input[str]] = [config.topic] if config.topic else []
    if config.email:
        groups.append(monitor.ActionGroup(
            fleet.child("alerts"), resource_group_name=group, location="Global", enabled=True,
            group_short_name=spec.name_within(12), tags=fleet.tags,
            email_receivers=[monitor.MicrosoftCommonEmailReceiverArgs(
                name="email", email_address=config.email, use_common_alert_schema=True)], opts=fleet.opts).id)
    never = alerts.never_healthy_minutes(sizing)
    # (gateway metric, statistic, operator, threshold, window minutes, the status group it counts)
    criteria = {
        "no_healthy_vm": ("HealthyHostCount", "Maximum", "LessThan", 1, alerts.NO_HEALTHY_VM_MINUTES, None),
        "errors_5xx": ("ResponseStatus", "Total", "GreaterThan", config.errors_per_minute * 5, 5, "5xx"),
        "never_healthy": ("UnhealthyHostCount", "Minimum", "GreaterThanOrEqual", 1, never, None),
    }
    hours = spec.office_hours
    for alarm in alerts.ALARMS:
        if alarm.key not in criteria:  # ttft_p95: no histograms in Azure Monitor (module docstring)
            continue
        if alarm.key == "no_healthy_vm" and hours and hours.off_hours_replicas == 0:
            continue
        name, statistic, operator, threshold, minutes, status = criteria[alarm.key]
        window = _window(minutes)
        monitor.MetricAlert(
            fleet.child(f"alarm-{alarm.key.replace('_', '-')}"), resource_group_name=group, location="global",
            tags=fleet.tags, description=f"vllm-fleet {spec.stack}: {alarm.title}", enabled=True, severity=1,
            scopes=[gateway.id], evaluation_frequency="PT1M" if minutes <= 60 else "PT15M", window_size=window,
            criteria=monitor.MetricAlertSingleResourceMultipleMetricCriteriaArgs(
                odata_type="Microsoft.Azure.Monitor.SingleResourceMultipleMetricCriteria",
                all_of=[monitor.MetricCriteriaArgs(
                    criterion_type="StaticThresholdCriterion", name=alarm.key, metric_name=name,
                    metric_namespace=GATEWAY, operator=operator, threshold=threshold, time_aggregation=statistic,
                    dimensions=[monitor.MetricDimensionArgs(name="HttpStatusGroup", operator="Include",
                                                            values=[status])] if status else None)]),
            actions=[monitor.MetricAlertActionArgs(action_group_id=id_) for id_ in groups],
            opts=fleet.opts)
