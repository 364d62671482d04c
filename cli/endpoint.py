"""Where a stack's endpoint is and the key to it, for the tools that talk to a deployed endpoint (cli.check,
cli.bench): read from the stack's outputs (`pulumi stack output --json --show-secrets`) or given explicitly."""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

ROOT = Path(__file__).resolve().parent.parent


class EndpointError(Exception):
    """The endpoint cannot be worked out: the message says why and what to do."""


@dataclass(frozen=True)
class Endpoint:
    url: str  # the server's root, e.g. https://codellama.example.com: /health and /metrics live here, the API under /v1
    api_key: str
    model: str | None  # the served model name; None: the one /v1/models lists first

    @property
    def openai_base_url(self) -> str:
        return f"{self.url}/v1"


def from_stack_outputs(outputs: Mapping[str, Any]) -> Endpoint:
    """The endpoint of a stack's outputs, as `pulumi stack output --json --show-secrets` prints them."""
    missing = [name for name in ("endpoint", "servedModelName", "apiKey") if name not in outputs]
    if missing:
        raise EndpointError(f"the stack has no output {', '.join(missing)}: has `pulumi up` finished?")
    if outputs["apiKey"] == "[secret]":
        raise EndpointError("apiKey is shown as [secret]: read the outputs with --show-secrets")
    return Endpoint(outputs["endpoint"].rstrip("/"), outputs["apiKey"], outputs["servedModelName"])


def stack_outputs(stack: str) -> dict[str, Any]:
    command = ["pulumi", "stack", "output", "--json", "--show-secrets", "-s", stack]
    try:
        result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=120)
    except FileNotFoundError:
        raise EndpointError("the Pulumi CLI is not installed (https://www.pulumi.com/docs/install/); "
                            "or give --url and --api-key") from None
    if result.returncode != 0:
        raise EndpointError(f"`{' '.join(command)}` failed: {result.stderr.strip()}")
    return json.loads(result.stdout)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    target = parser.add_mutually_exclusive_group(required=True)
    target.add_argument("--stack", help="a deployed stack: its outputs name the endpoint, model and key")
    target.add_argument("--url", help="the endpoint's URL, e.g. https://codellama.example.com (a trailing /v1 is "
                                      "fine); with --api-key")
    parser.add_argument("--api-key", default=os.environ.get("OPENAI_API_KEY"),
                        help="the API key for --url (default: $OPENAI_API_KEY)")
    parser.add_argument("--model", help="the served model name (default: the stack's, or the first the endpoint "
                                        "lists)")


def from_arguments(args: argparse.Namespace) -> Endpoint:
    if args.stack:
        endpoint = from_stack_outputs(stack_outputs(args.stack))
        return dataclasses.replace(endpoint, model=args.model) if args.model else endpoint
    if not args.api_key:
        raise EndpointError("--url needs --api-key (or OPENAI_API_KEY in the environment)")
    return Endpoint(args.url.rstrip("/").removesuffix("/v1"), args.api_key, args.model)
