"""The GitHub Action run offline: a local fake of GitHub's issue-comments API, served over real HTTP on a
free loopback port, and the action's steps run as a runner runs them (run_action).

It answers the calls the GitHub Action makes, as GitHub documents them: list a pull request's comments
(`per_page`, `page`, a `Link` header with rel="next"), create one, edit one. It checks the bearer token,
refuses bodies over 65,536 characters with a 422 as GitHub does, and keeps every request it served so
that tests can say which calls were made. `refuse_writes` answers 403 to creates and edits, as GitHub
does to the read-only token of a pull request from a fork.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import yaml

ROOT = Path(__file__).resolve().parent.parent
ACTION = yaml.safe_load((ROOT / "action.yml").read_text(encoding="utf-8"))
EVENT = Path(__file__).resolve().parent / "data" / "pull_request_event.json"
TOKEN = "ghs_" + "t" * 36
BOT = {"login": "github-actions[bot]", "id": 41898282, "type": "Bot"}


@dataclass
class FakeGitHub:
    repository: str = "acme-finance/credits"
    token: str = TOKEN
    refuse_writes: bool = False
    comments: dict[int, list[dict]] = field(default_factory=dict)
    requests: list[tuple[str, str]] = field(default_factory=list)
    _next_id: int = 1000

    def __enter__(self) -> FakeGitHub:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:
                pass

            def do_GET(self) -> None:
                fake.serve(self, "GET")

            def do_POST(self) -> None:
                fake.serve(self, "POST")

            def do_PATCH(self) -> None:
                fake.serve(self, "PATCH")

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()

    # ------------------------------------------------------------------ for tests

    def add_comment(self, number: int, body: str, user: dict | None = None) -> dict:
        self._next_id += 1
        comment = {
            "id": self._next_id,
            "body": body,
            "user": user or {"login": "reviewer", "id": 7, "type": "User"},
            "created_at": f"2026-12-01T10:{self._next_id % 60:02d}:00Z",
            "html_url": f"https://github.com/{self.repository}/pull/{number}#issuecomment-{self._next_id}",
        }
        self.comments.setdefault(number, []).append(comment)
        return comment

    def writes(self) -> list[tuple[str, str]]:
        return [(method, path) for method, path in self.requests if method != "GET"]

    # ------------------------------------------------------------------ the API

    def serve(self, handler: BaseHTTPRequestHandler, method: str) -> None:
        url = urlsplit(handler.path)
        self.requests.append((method, url.path))
        if handler.headers.get("Authorization") != f"Bearer {self.token}":
            return self.answer(handler, 401, {"message": "Bad credentials"})
        prefix = f"/repos/{self.repository}/issues"
        listing = re.fullmatch(rf"{re.escape(prefix)}/(\d+)/comments", url.path)
        single = re.fullmatch(rf"{re.escape(prefix)}/comments/(\d+)", url.path)
        if method == "GET" and listing:
            return self.list_comments(handler, int(listing.group(1)), parse_qs(url.query))
        if method in ("POST", "PATCH") and (listing or single):
            if self.refuse_writes:
                return self.answer(handler, 403, {"message": "Resource not accessible by integration"})
            length = int(handler.headers.get("Content-Length", 0))
            body = json.loads(handler.rfile.read(length))["body"]
            if len(body) > 65536:
                return self.answer(
                    handler,
                    422,
                    {
                        "message": "Validation Failed",
                        "errors": [
                            {
                                "resource": "IssueComment",
                                "code": "custom",
                                "field": "body",
                                "message": "body is too long (maximum is 65536 characters)",
                            }
                        ],
                    },
                )
            if listing:
                comment = self.add_comment(int(listing.group(1)), body, user=BOT)
                return self.answer(handler, 201, comment)
            for comments in self.comments.values():
                for comment in comments:
                    if comment["id"] == int(single.group(1)):
                        comment["body"] = body
                        return self.answer(handler, 200, comment)
        return self.answer(handler, 404, {"message": "Not Found"})

    def list_comments(self, handler: BaseHTTPRequestHandler, number: int, query: dict) -> None:
        per_page = min(int(query.get("per_page", ["30"])[0]), 100)
        page = int(query.get("page", ["1"])[0])
        comments = self.comments.get(number, [])
        chunk = comments[(page - 1) * per_page : page * per_page]
        headers = {}
        if page * per_page < len(comments):
            base = f"{self.url}/repos/{self.repository}/issues/{number}/comments"
            headers["Link"] = (
                f'<{base}?per_page={per_page}&page={page + 1}>; rel="next", '
                f'<{base}?per_page={per_page}&page={-(-len(comments) // per_page)}>; rel="last"'
            )
        self.answer(handler, 200, chunk, headers)

    @staticmethod
    def answer(handler: BaseHTTPRequestHandler, status: int, payload, headers: dict | None = None) -> None:
        data = json.dumps(payload).encode()
        handler.send_response(status)
        handler.send_header("Content-Type", "application/json; charset=utf-8")
        handler.send_header("Content-Length", str(len(data)))
        for name, value in (headers or {}).items():
            handler.send_header(name, value)
        handler.end_headers()
        handler.wfile.write(data)


# ------------------------------------------------------------------ the action's steps, as a runner runs them


def action_step(name_prefix: str) -> dict:
    return next(s for s in ACTION["runs"]["steps"] if str(s.get("name", "")).startswith(name_prefix))


def expand(value: str, inputs: dict[str, str]) -> str:
    """${{ inputs.x }} in a step's env, the one kind of expression the action's steps use."""
    return re.sub(r"\$\{\{\s*inputs\.([\w-]+)\s*\}\}", lambda m: inputs[m.group(1)], value)


def action_inputs(given: dict[str, str], token: str = TOKEN) -> dict[str, str]:
    """Every input as the runner resolves it: what the workflow gave, else the default of action.yml."""
    resolved = {}
    for name, spec in ACTION["inputs"].items():
        default = str(spec.get("default", ""))
        resolved[name] = given.get(name, token if default == "${{ github.token }}" else default)
    unknown = set(given) - set(ACTION["inputs"])
    assert not unknown, f"not inputs of action.yml: {unknown}"
    return resolved


def run_action(
    workspace: Path,
    bin_dir: Path,
    given: dict[str, str],
    *,
    github: FakeGitHub | None = None,
    event_name: str = "pull_request",
    event: dict | None = None,
    env: dict[str, str] | None = None,
    step: str = "provisioner",
) -> tuple[subprocess.CompletedProcess, dict[str, str]]:
    """Runs one step of action.yml (its `run`, with its `env` expanded from the inputs) in ``workspace``,
    as the runner would: GITHUB_* set, `provisioner` on PATH. Returns the process and its outputs."""
    inputs = action_inputs(given)
    spec = action_step(step)
    outputs_file = workspace.parent / f"{workspace.name}.outputs"
    outputs_file.write_text("")
    event_file = workspace.parent / f"{workspace.name}.event.json"
    event_file.write_text(json.dumps(event if event is not None else json.loads(EVENT.read_text())))
    full_env = {
        **os.environ,
        **(env or {}),
        **{name: expand(str(value), inputs) for name, value in spec.get("env", {}).items()},
        "PATH": f"{bin_dir}{os.pathsep}{(env or {}).get('PATH', os.environ['PATH'])}",
        "GITHUB_ACTION_PATH": str(ROOT),
        "GITHUB_EVENT_NAME": event_name,
        "GITHUB_EVENT_PATH": str(event_file),
        "GITHUB_REPOSITORY": github.repository if github else "acme-finance/credits",
        "GITHUB_API_URL": github.url if github else "http://127.0.0.1:9",
        "GITHUB_SHA": "fedcba9876543210fedcba9876543210fedcba98",
        "GITHUB_OUTPUT": str(outputs_file),
    }
    script = spec["run"].replace("python ", f'"{sys.executable}" ', 1)  # the python setup-python put first on PATH
    cwd = workspace / expand(str(spec.get("working-directory", ".")), inputs)
    done = subprocess.run(
        ["bash", "--noprofile", "--norc", "-eo", "pipefail", "-c", script],
        cwd=cwd,
        env=full_env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    outputs = dict(line.split("=", 1) for line in outputs_file.read_text().splitlines() if "=" in line)
    return done, outputs
