"""The fleet's self-managed Pulumi backend (pulumi login s3:// | gs:// | azblob://), as object keys in its bucket:
what a stack's deploy identity may write (its own stack's objects only) and what the read-only identities may
write (the locks: the backend takes a stack's lock even for a preview or a preview-only refresh)."""

from __future__ import annotations

PROJECT = "vllm-fleet"  # the fleet's Pulumi project (Pulumi.yaml)
META = ".pulumi/meta.yaml"  # the backend's format version, read by every operation


def lock_prefix(stack: str) -> str:
    return f".pulumi/locks/organization/{PROJECT}/{stack}/"


def stack_prefixes(stack: str) -> list[str]:
    """The stack's state (and its .bak), backups, history and lock: each a prefix no other stack's key has."""
    return [f".pulumi/stacks/{PROJECT}/{stack}.json", f".pulumi/backups/{PROJECT}/{stack}/",
            f".pulumi/history/{PROJECT}/{stack}/", lock_prefix(stack)]
