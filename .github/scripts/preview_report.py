"""The preview of one stack for a pull request, in two parts that run in two jobs (preview.yml):

- `--part plan`: the offline plan and the policy pack of the head and of the base (what is deployed once main is).
  It runs the pull request's code, so its job has no secret and no OIDC token: it reaches nothing.
- `--part pulumi`: `pulumi preview` with the policy pack, against the stack's state and cloud. Its job runs in the
  environment vllm-fleet-preview, which a reviewer approves, with the preview identity.

Each is written as the markdown of its own pull-request comment of the stack, and to the job summary.

    python .github/scripts/preview_report.py --part plan --stack codellama-prod --base-root base --out comment.md
    python .github/scripts/preview_report.py --part pulumi --stack codellama-prod --out comment.md

Exits 1 when the head's offline plan fails (config error, policy violation) or `pulumi preview` fails, after
writing the report; 0 otherwise.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import plan_diff
from ci_common import PULUMI_BUSY, PULUMI_NO_STACK, ROOT, add_summary, stack_config, stack_file
from cloud_credentials import missing

HOURS_PER_MONTH = 730
# cli.plan's exit statuses (1: a policy violation, before the codes below were introduced).
PLAN_EXITS = {1: "policy violation", 2: "config error", 3: "policy violation", 4: "internal error of the plan"}
LISTED = 25  # resources named per list; the rest are counted
PULUMI_TIMEOUT_SECONDS = 1800


PARTS = ("plan", "pulumi")
# Where the real preview is, for the offline plan's comment.
PULUMI_PREVIEW_JOB = ("runs in the job `pulumi preview {stack}` once a reviewer approves the environment "
                      "vllm-fleet-preview (its own comment)")


def marker(stack: str, part: str = "plan") -> str:
    """The hidden line that finds this stack's comment of this part again (edited in place on every push)."""
    return f"<!-- vllm-fleet-{'preview' if part == 'plan' else 'pulumi-preview'} stack={stack} -->"


@dataclass
class Outcome:
    """What one command gave: a JSON document when it printed one, and why not `ok`."""
    status: str  # ok | failed | missing | skipped | not-initialized | busy
    document: dict[str, Any] | None = None
    reason: str = ""

    @property
    def ok(self) -> bool:
        return self.status == "ok"


def _json(text: str) -> dict[str, Any] | None:
    try:
        document = json.loads(text)
    except json.JSONDecodeError:
        return None
    return document if isinstance(document, dict) else None


def _first_line(text: str) -> str:
    """What a failed command said first: the plan's one-line config error, Pulumi's `error:` line."""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("error:")]
    return (errors or lines or [""])[0][:400]


def offline_plan(root: Path, stack: str) -> Outcome:
    """`python -m cli.plan` of a checkout (the head, or the base's worktree) for one stack file."""
    path = stack_file(root, stack)
    if not path.exists():
        return Outcome("missing", reason=f"stacks/{path.name} does not exist there")
    result = subprocess.run([sys.executable, "-m", "cli.plan", str(path), "--format", "json"], cwd=root,
                            capture_output=True, text=True, timeout=600)
    document = _json(result.stdout)
    if result.returncode == 0 and document is not None:
        return Outcome("ok", document)
    meaning = PLAN_EXITS.get(result.returncode, f"exit status {result.returncode}")
    return Outcome("failed", document, f"{meaning}: {_first_line(result.stderr)}".rstrip(": "))


def pulumi_preview(stack: str) -> Outcome:
    """The real `pulumi preview --json` with the policy pack, against the stack's state and cloud."""
    command = ["pulumi", "preview", "--json", "--non-interactive", "--policy-pack", "policies", "--stack", stack]
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=PULUMI_TIMEOUT_SECONDS)
    document = _json(result.stdout)
    if result.returncode == 0 and document is not None:
        return Outcome("ok", document)
    errors = "\n".join([result.stderr, *plan_diff.diagnostics(document or {}, "error")])
    if re.search(PULUMI_NO_STACK, errors, re.I):
        return Outcome("not-initialized", document, "the stack does not exist in the state backend yet: `pulumi "
                                                    f"stack init {stack}` creates it (docs/ci.md, section 5); until "
                                                    "then a merge does not deploy it")
    if re.search(PULUMI_BUSY, errors, re.I):
        return Outcome("busy", document, "the stack is being deployed right now: push again to preview once it is done")
    return Outcome("failed", document, _first_line(errors) or f"exit status {result.returncode}")


def money(usd: float) -> str:
    return f"${usd:,.0f}"


def monthly_cost(plan: Outcome) -> float | None:
    cost = (plan.document or {}).get("outputs", {}).get("estimatedCost") if plan.ok else None
    return cost["usdPerMonth"] if cost else None


def _cost_rows(base: Outcome, head: Outcome) -> list[str]:
    rows = ["| | main | this pull request |", "| --- | ---: | ---: |"]
    before, after = monthly_cost(base), monthly_cost(head)
    change = ""
    if before is not None and after is not None:
        delta = after - before
        change = f" ({'+' if delta > 0 else '-'}{money(abs(delta))})" if round(delta) else " (no change)"
    rows.append(f"| GPU VMs a month (desired replicas; officeHours counted) | {money(before) if before is not None else '—'} | "
                f"{money(after) if after is not None else '—'}{change} |")

    def output(plan: Outcome, key: str, render) -> str:
        value = (plan.document or {}).get("outputs", {}).get(key) if plan.ok else None
        return render(value) if value is not None else "—"

    rows.append("| at max replicas, a month | "
                + " | ".join(output(p, "estimatedCost", lambda c: money(c["usdPerHourAtMaxReplicas"] * HOURS_PER_MONTH))
                             for p in (base, head)) + " |")
    rows.append("| instance type × replicas (min/desired/max) | " + " | ".join(
        output(p, "replicas", lambda r, p=p: f"{p.document['outputs'].get('instanceType')} × "
                                              f"{r['min']}/{r['desired']}/{r['max']}") for p in (base, head)) + " |")
    return rows


def _names(urns: list[str]) -> str:
    shown = ", ".join(f"`{plan_diff.step_type({'urn': u})}` {plan_diff.resource_name(u)}" for u in urns[:LISTED])
    return shown + (f" and {len(urns) - LISTED} more" if len(urns) > LISTED else "")


def _title(stack: str, cloud: str, region: str, what: str) -> str:
    return f"### vllm-fleet {what}: `{stack}` ({cloud or 'unknown cloud'}, {region or '?'})"


def _replacement(reasons: list[str], head: Outcome | None) -> list[str]:
    if not reasons:
        return []
    serve = (((head.document if head else None) or {}).get("outputs", {}).get("timeToServe") or {}).get("seconds")
    return [f"**This change replaces every GPU VM of the stack** ({', '.join(reasons)}): each VM is "
            f"recreated and loads the model again, one after the other while the others keep serving"
            + (f" (about {round(serve / 60)} minutes a VM)." if serve else "."), ""]


def _warnings(*documents: dict[str, Any] | None) -> list[str]:
    warnings: list[str] = []
    for document in documents:
        found = plan_diff.diagnostics(document or {}, "warning") + list(
            (document or {}).get("outputs", {}).get("warnings") or [])
        warnings += [warning for warning in found if warning not in warnings]
    return ["", "**Warnings**", *(f"- {warning}" for warning in warnings)] if warnings else []


def render_plan(stack: str, cloud: str, region: str, head: Outcome, base: Outcome,
                head_config: Mapping[str, Any], base_config: Mapping[str, Any]) -> str:
    """The offline plan's comment: costs, changes against main, VM replacement, the policy pack, warnings."""
    lines = [marker(stack), _title(stack, cloud, region, "offline plan"), ""]
    if head.status == "missing":
        lines += [f"**`stacks/Pulumi.{stack}.yaml` is removed.** Merging does not destroy the stack: its resources "
                  f"keep running (and costing) until `pulumi destroy -s {stack}`.", ""]
        return "\n".join(lines)

    reasons = plan_diff.vm_replacement_offline(base.document, head.document, base_config, head_config) \
        if head.ok and base.ok else []
    lines += _replacement(reasons, head)
    lines += _cost_rows(base, head) + [""]

    if not head.ok:
        lines += [f"**The offline plan failed** ({head.reason})."]
    else:
        summary = f"**Offline plan** (`make plan`, no cloud asked): {len(head.document.get('steps') or [])} resources"
        if base.ok:
            changes = plan_diff.offline_changes(base.document, head.document)
            summary += (f"; against main {len(changes.added)} added, {len(changes.removed)} removed, "
                        f"{len(changes.changed)} changed")
            lines.append(summary + ".")
            if changes.added:
                lines.append(f"- added: {_names(changes.added)}")
            if changes.removed:
                lines.append(f"- removed: {_names(changes.removed)}")
            for urn, keys in list(changes.changed.items())[:LISTED]:
                lines.append(f"- changed: `{plan_diff.step_type({'urn': urn})}` {plan_diff.resource_name(urn)} "
                             f"({', '.join(keys)})")
        else:
            lines.append(summary + f" (main: {base.reason or 'no plan'}).")
    violations = plan_diff.diagnostics(head.document or {}, "error")
    lines += ["", "**Policy pack** (`policies/`): " + (
        f"{len(violations)} violations" if violations else "all policies pass" if head.document else "not run")]
    lines += [f"- {violation}" for violation in violations]
    lines += ["", f"**`pulumi preview`** {PULUMI_PREVIEW_JOB.format(stack=stack)}."]
    lines += _warnings(head.document)
    return "\n".join(lines) + "\n"


def render_pulumi(stack: str, cloud: str, region: str, preview: Outcome) -> str:
    """The real preview's comment: what it creates, updates, replaces and deletes, VM replacement, warnings."""
    lines = [marker(stack, "pulumi"), _title(stack, cloud, region, "pulumi preview"), ""]
    if preview.ok:
        lines += _replacement(plan_diff.vm_replacement_preview(preview.document), None)
        operations = plan_diff.preview_operations(preview.document)
        lines.append("**`pulumi preview`** (with the policy pack): " + ", ".join(
            f"{len(urns)} to {op}" for op, urns in operations.items()))
        lines += [f"- {op}: {_names(urns)}" for op, urns in operations.items() if urns]
    elif preview.status == "failed":
        lines.append(f"**`pulumi preview` failed**: {preview.reason}")
    else:
        lines.append(f"**`pulumi preview`** not run: {preview.reason}")
    lines += _warnings(preview.document)
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--part", choices=PARTS, required=True)
    parser.add_argument("--stack", required=True)
    parser.add_argument("--base-root", type=Path, help="a checkout of the pull request's base (--part plan)")
    parser.add_argument("--out", required=True, type=Path, help="where to write the comment's markdown")
    args = parser.parse_args(argv)
    if args.part == "plan" and not args.base_root:
        parser.error("--part plan needs --base-root")

    head_config = stack_config(stack_file(ROOT, args.stack))
    if args.part == "plan":
        head, base = offline_plan(ROOT, args.stack), offline_plan(args.base_root, args.stack)
        base_config = stack_config(stack_file(args.base_root, args.stack))
        config = head_config or base_config
        report = render_plan(args.stack, config.get("cloud", ""), config.get("region", ""), head, base,
                             head_config, base_config)
        failed = head.status == "failed"
    else:
        reason = missing(head_config.get("cloud", ""), "preview", os.environ)
        if not head_config:
            preview = Outcome("skipped", reason="the stack file is removed")
        elif reason:
            preview = Outcome("skipped", reason=reason)
        else:
            preview = pulumi_preview(args.stack)
        report = render_pulumi(args.stack, head_config.get("cloud", ""), head_config.get("region", ""), preview)
        failed = preview.status == "failed"
    args.out.write_text(report)
    add_summary(report)
    print(report)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
