"""What every cloud's Fleet component shares: child resource names, warnings and the endpoint output."""

from __future__ import annotations

import pulumi

from fleet.spec import FleetSpec


class FleetComponent(pulumi.ComponentResource):
    endpoint: pulumi.Output[str]
    warnings: list[str]

    def __init__(self, cloud: str, name: str):
        super().__init__(f"vllm-fleet:{cloud}:Fleet", name)
        self._name = name
        self.warnings = []

    def _child(self, suffix: str) -> str:
        return f"{self._name}-{suffix}"

    def _warn(self, message: str) -> None:
        """Shown by `pulumi preview/up` and kept in the stack's `warnings` output."""
        pulumi.log.warn(message, resource=self)
        self.warnings.append(message)

    def _warn_plain_http(self, spec: FleetSpec, how_to_fix: str) -> None:
        self._warn(f"{spec.stack}: the endpoint is plain HTTP: prompts, completions and the API key cross the "
                   f"network unencrypted. {how_to_fix}")

    def _serve_at(self, scheme: str | pulumi.Output[str], host: str | pulumi.Output[str]) -> None:
        self.endpoint = pulumi.Output.concat(scheme, "://", host)
        self.register_outputs({"endpoint": self.endpoint})
