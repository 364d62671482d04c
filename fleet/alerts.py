"""The stack's alarms, cloud-neutral (each cloud renders them in components/<cloud>/dashboard.py), and the `alerts`
key: where they notify and their thresholds. Without the key the alarms exist and notify no one."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .errors import ConfigError
from .values import whole_number

if TYPE_CHECKING:  # spec.py parses the key with this module
    from .sizing import Sizing


@dataclass(frozen=True)
class Alarm:
    key: str
    title: str


ALARMS = (
    Alarm("no_healthy_vm", "no healthy VM for 5 minutes"),
    Alarm("errors_5xx", "5xx answers above the alerts.errorsPerMinute rate"),
    Alarm("ttft_p95", "time to first token p95 above alerts.ttftP95Seconds"),
    Alarm("never_healthy", "a VM that never became healthy within its time to serve"),
)
NO_HEALTHY_VM_MINUTES = 5
# A VM counts as never healthy once it has been unhealthy for its time to serve and this margin.
NEVER_HEALTHY_MARGIN_MINUTES = 10

KEY_DOC = ("{email, topic, errorsPerMinute, ttftP95Seconds}: where the stack's alarms notify (an email address, "
           "and/or the cloud's existing topic: an SNS topic ARN, a Monitoring notification channel, an action group "
           "id), 5xx a minute above which to alarm (default 5) and the TTFT p95 in seconds (default 5)")
DEFAULT_ERRORS_PER_MINUTE = 5
DEFAULT_TTFT_P95_SECONDS = 5.0
_EMAIL = re.compile(r"^[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}$")
# The notification targets a stack may name on each cloud.
TOPICS = {
    "aws": (re.compile(r"^arn:aws[a-z-]*:sns:[a-z0-9-]+:\d{12}:[A-Za-z0-9_-]{1,256}$"),
            "an SNS topic ARN, e.g. arn:aws:sns:us-east-1:123456789012:oncall"),
    "gcp": (re.compile(r"^projects/[a-z][a-z0-9-]{4,28}[a-z0-9]/notificationChannels/\d+$"),
            "a notification channel, e.g. projects/my-project/notificationChannels/1234567890"),
    "azure": (re.compile(r"^/subscriptions/[0-9a-f-]{36}/resourceGroups/[^/]+/providers/microsoft\.insights/"
                         r"actionGroups/[^/]+$", re.IGNORECASE),
              "an action group id, e.g. /subscriptions/<id>/resourceGroups/ops/providers/microsoft.insights/"
              "actionGroups/oncall"),
}


@dataclass(frozen=True)
class Alerts:
    email: str | None = None
    topic: str | None = None
    errors_per_minute: int = DEFAULT_ERRORS_PER_MINUTE
    ttft_p95_seconds: float = DEFAULT_TTFT_P95_SECONDS

    @property
    def notifies(self) -> bool:
        return bool(self.email or self.topic)


def parse_alerts(value: Any, cloud: str) -> Alerts:
    if value is None:
        return Alerts()
    if not isinstance(value, dict) or set(value) - {"email", "topic", "errorsPerMinute", "ttftP95Seconds"}:
        raise ConfigError("alerts", value, f"must be a map {KEY_DOC}, e.g. {{email: oncall@example.com}}")
    if not ({"email", "topic"} & set(value)):
        raise ConfigError("alerts", value, "names no one to notify: set alerts.email (an address) or alerts.topic")
    email, topic = value.get("email"), value.get("topic")
    if email is not None and (not isinstance(email, str) or not _EMAIL.match(email)):
        raise ConfigError("alerts.email", email, "must be one email address, e.g. oncall@example.com")
    pattern, expected = TOPICS[cloud]
    if topic is not None and (not isinstance(topic, str) or not pattern.match(topic)):
        raise ConfigError("alerts.topic", topic, f"on {cloud} must be {expected}")
    ttft = value.get("ttftP95Seconds", DEFAULT_TTFT_P95_SECONDS)
    if isinstance(ttft, bool) or not isinstance(ttft, (int, float)) or not 0.05 <= ttft <= 600:
        raise ConfigError("alerts.ttftP95Seconds", ttft, "must be a number of seconds from 0.05 to 600, e.g. 5")
    errors = whole_number("alerts.errorsPerMinute", value.get("errorsPerMinute", DEFAULT_ERRORS_PER_MINUTE), 1, 100000)
    return Alerts(email=email, topic=topic, errors_per_minute=errors, ttft_p95_seconds=float(ttft))


def never_healthy_minutes(sizing: Sizing) -> int:
    return math.ceil(sizing.time_to_serve.seconds / 60) + NEVER_HEALTHY_MARGIN_MINUTES
