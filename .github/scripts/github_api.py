"""The few GitHub REST calls the workflows make: one comment per stack on a pull request and one issue per
drifted stack, each found again by a hidden marker and edited in place. The token comes from the environment
(GITHUB_TOKEN, the job's own), never from the command line, and is never printed."""

from __future__ import annotations

import json
import os
import urllib.error
import urllib.request
from typing import Any, Callable, Iterator

Send = Callable[[str, str, Any], Any]  # (method, path, JSON body or None) -> decoded JSON answer
PAGE = 100
# Only what this job's token wrote is edited: a comment or issue of anyone else that quotes a marker is left alone.
BOT = "github-actions[bot]"


def _by_bot(item: dict[str, Any]) -> bool:
    return (item.get("user") or {}).get("login") == BOT


class GitHubError(Exception):
    pass


class GitHub:
    def __init__(self, repository: str, token: str, api_url: str = "https://api.github.com",
                 send: Send | None = None) -> None:
        self.repository = repository
        self._token = token
        self._api_url = api_url.rstrip("/")
        self.send = send or self._urllib_send

    @classmethod
    def from_environment(cls) -> "GitHub":
        token = os.environ.get("GITHUB_TOKEN")
        if not token:
            raise GitHubError("GITHUB_TOKEN is not set: give the step `env: GITHUB_TOKEN: ${{ github.token }}`")
        return cls(os.environ["GITHUB_REPOSITORY"], token, os.environ.get("GITHUB_API_URL", "https://api.github.com"))

    def _urllib_send(self, method: str, path: str, body: Any) -> Any:
        request = urllib.request.Request(
            f"{self._api_url}{path}", method=method, data=None if body is None else json.dumps(body).encode(),
            headers={"Authorization": f"Bearer {self._token}", "Accept": "application/vnd.github+json",
                     "X-GitHub-Api-Version": "2022-11-28", "Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=60) as response:
                text = response.read().decode()
        except urllib.error.HTTPError as error:
            raise GitHubError(f"{method} {path}: {error.code} {error.reason}") from None
        return json.loads(text) if text else None

    def pages(self, path: str) -> Iterator[dict[str, Any]]:
        separator = "&" if "?" in path else "?"
        page = 1
        while True:
            items = self.send("GET", f"{path}{separator}per_page={PAGE}&page={page}", None)
            yield from items
            if len(items) < PAGE:
                return
            page += 1

    def upsert_comment(self, number: int, marker: str, body: str) -> str:
        """Edits the pull request's comment that carries `marker`, or adds one; returns what it did."""
        repo = f"/repos/{self.repository}"
        for comment in self.pages(f"{repo}/issues/{number}/comments"):
            if _by_bot(comment) and marker in (comment.get("body") or ""):
                self.send("PATCH", f"{repo}/issues/comments/{comment['id']}", {"body": body})
                return "updated"
        self.send("POST", f"{repo}/issues/{number}/comments", {"body": body})
        return "created"

    def open_issue_with(self, marker: str, label: str) -> dict[str, Any] | None:
        for issue in self.pages(f"/repos/{self.repository}/issues?state=open&labels={label}"):
            if "pull_request" not in issue and _by_bot(issue) and marker in (issue.get("body") or ""):
                return issue
        return None

    def upsert_issue(self, marker: str, label: str, title: str, body: str,
                     again: str = "Still drifted: the description above is the latest check.") -> str:
        """Updates the open issue that carries `marker` (and the comment `again` says it happened again), or opens
        one."""
        repo = f"/repos/{self.repository}"
        issue = self.open_issue_with(marker, label)
        if issue:
            self.send("PATCH", f"{repo}/issues/{issue['number']}", {"title": title, "body": body})
            self.send("POST", f"{repo}/issues/{issue['number']}/comments", {"body": again})
            return "updated"
        self.send("POST", f"{repo}/issues", {"title": title, "body": body, "labels": [label]})
        return "opened"

    def close_issue(self, marker: str, label: str, comment: str) -> str:
        """Closes the open issue that carries `marker`, with a comment; returns what it did."""
        issue = self.open_issue_with(marker, label)
        if not issue:
            return "none open"
        repo = f"/repos/{self.repository}"
        self.send("POST", f"{repo}/issues/{issue['number']}/comments", {"body": comment})
        self.send("PATCH", f"{repo}/issues/{issue['number']}", {"state": "closed", "state_reason": "completed"})
        return "closed"
