"""What every cloud's metrics agent on the VMs shares (fleet/metrics.py lists what it ships): one script that
installs and starts the cloud's agent, run by one systemd unit apart from the setup and vLLM, and the agent's
configuration files, each a template of cloud-init/metrics/."""

from __future__ import annotations

from typing import Mapping

from fleet import metrics
from fleet.bootstrap import CloudFile
from fleet.spec import FleetSpec

METRICS_SCRIPT = "/usr/local/sbin/vllm-fleet-metrics"
METRICS_UNIT = "vllm-fleet-metrics.service"
CONFIG_DIR = "/etc/vllm-fleet"


def agent_boot(cloud: str, spec: FleetSpec, shipped: tuple[metrics.VllmMetric, ...], configs: Mapping[str, str],
               values: Mapping[str, object], labels: Mapping[str, str] | None = None) -> dict:
    """CloudBoot's files, units, vars and scrape for the cloud's agent: cloud-init/metrics/<cloud>.sh.j2 as the
    script, `configs` (file name under CONFIG_DIR -> template of cloud-init/metrics/), `values` for the templates,
    `labels` for the scrape target (every series of it carries them)."""
    files = (CloudFile(METRICS_SCRIPT, f"metrics/{cloud}.sh.j2", "0755"),
             CloudFile(f"/etc/systemd/system/{METRICS_UNIT}", "metrics/vllm-fleet-metrics.service.j2"),
             *(CloudFile(f"{CONFIG_DIR}/{name}", f"metrics/{template}") for name, template in configs.items()))
    return dict(files=files, units=(METRICS_UNIT,),
                scrape=metrics.Scrape(metrics.job_name(spec), shipped, dict(labels or {})),
                vars={"metrics_script": METRICS_SCRIPT, **values})
