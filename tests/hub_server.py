"""A small Hugging Face Hub API server on 127.0.0.1 for tests.

It speaks the subset of the Hub API that huggingface_hub 2.4 uses to create repos, commit
files (and validate a README's YAML), make branches and tags, list refs and trees, and download
(see ENVIRONMENT.md, "Loader and Hub"), for "model" and "kernel" repos. Storage is in memory
and git-like: every commit is a full snapshot of the repo's files with a 40-hex SHA. Every
request is recorded, so a test can assert how many downloads, or that no request, happened.
"""

from __future__ import annotations

import base64
import hashlib
import itertools
import json
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, unquote, urlsplit

URL_PREFIXES = {"model": "", "kernel": "kernels/", "dataset": "datasets/", "space": "spaces/"}
_TYPE_BY_API_SEGMENT = {f"{repo_type}s": repo_type for repo_type in URL_PREFIXES}
_TYPE_BY_URL_PREFIX = {"kernels": "kernel", "datasets": "dataset", "spaces": "space"}


@dataclass(frozen=True)
class Request:
    method: str
    path: str


@dataclass
class Commit:
    sha: str
    files: dict[str, bytes]
    message: str


@dataclass
class Repo:
    repo_type: str
    repo_id: str
    commits: dict[str, Commit] = field(default_factory=dict)
    branches: dict[str, str] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)

    def resolve(self, revision: str) -> Commit | None:
        sha = self.branches.get(revision) or self.tags.get(revision) or revision
        return self.commits.get(sha)


class HubError(Exception):
    """An HTTP error answer; error_code goes to X-Error-Code, which huggingface_hub reads."""

    def __init__(
        self, status: int, message: str, error_code: str | None = None, **extra: str
    ) -> None:
        super().__init__(message)
        self.status = status
        self.error_code = error_code
        self.extra = extra


def git_blob_sha(content: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(content) + content).hexdigest()


class HubServer:
    """The server; start() binds a free port once, restarts reuse it so HF_ENDPOINT stays valid."""

    def __init__(self) -> None:
        self.repos: dict[tuple[str, str], Repo] = {}
        self.trusted_orgs: set[str] = set()
        self.requests: list[Request] = []
        self.port = 0
        self._lock = threading.Lock()
        self._counter = itertools.count()
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def running(self) -> bool:
        return self._httpd is not None

    def start(self) -> HubServer:
        if self._httpd is not None:
            return self
        handler = type("BoundHandler", (_Handler,), {"hub": self})
        httpd = ThreadingHTTPServer(("127.0.0.1", self.port), handler)
        httpd.daemon_threads = True
        self.port = httpd.server_address[1]
        self._httpd = httpd
        self._thread = threading.Thread(target=httpd.serve_forever, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._httpd is None:
            return
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join()
        self._httpd = self._thread = None

    def downloads(self, path_contains: str = "") -> list[Request]:
        """GET requests for file contents (the /resolve/ route)."""
        return [
            request
            for request in self.requests
            if request.method == "GET" and "/resolve/" in request.path
            and path_contains in request.path
        ]

    # Repository operations, shared by the HTTP routes and by tests that seed data directly.

    def create_repo(self, repo_type: str, repo_id: str) -> Repo:
        with self._lock:
            if (repo_type, repo_id) in self.repos:
                raise HubError(409, f"You already created this {repo_type} repo: {repo_id}")
            repo = Repo(repo_type, repo_id)
            first = self._new_commit(repo, {}, "initial commit")
            repo.branches["main"] = first.sha
            self.repos[(repo_type, repo_id)] = repo
            return repo

    def commit(
        self,
        repo: Repo,
        branch: str,
        message: str,
        additions: dict[str, bytes],
        deletions: tuple[str, ...] = (),
    ) -> Commit:
        with self._lock:
            if branch not in repo.branches:
                raise HubError(404, f"Invalid rev id: {branch}", "RevisionNotFound")
            files = dict(repo.commits[repo.branches[branch]].files)
            for path in deletions:
                folder = path.rstrip("/") + "/"
                files = {
                    name: data
                    for name, data in files.items()
                    if name != path and not name.startswith(folder)
                }
            files.update(additions)
            commit = self._new_commit(repo, files, message)
            repo.branches[branch] = commit.sha
            return commit

    def _new_commit(self, repo: Repo, files: dict[str, bytes], message: str) -> Commit:
        seed = f"{repo.repo_type}/{repo.repo_id}/{next(self._counter)}/{message}".encode()
        commit = Commit(hashlib.sha1(seed).hexdigest(), files, message)
        repo.commits[commit.sha] = commit
        return commit

    def find_repo(self, repo_type: str, repo_id: str) -> Repo:
        repo = self.repos.get((repo_type, repo_id))
        if repo is None:
            raise HubError(404, f"Repository not found: {repo_id}", "RepoNotFound")
        return repo

    def find_commit(self, repo: Repo, revision: str) -> Commit:
        commit = repo.resolve(revision)
        if commit is None:
            raise HubError(404, f"Invalid rev id: {revision}", "RevisionNotFound")
        return commit


class _Handler(BaseHTTPRequestHandler):
    hub: HubServer
    protocol_version = "HTTP/1.1"

    def log_message(self, format, *args) -> None:  # noqa: A002 - the base class names it so
        pass

    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_HEAD(self) -> None:
        self._dispatch("HEAD")

    def do_POST(self) -> None:
        self._dispatch("POST")

    def do_DELETE(self) -> None:
        self._dispatch("DELETE")

    def _dispatch(self, method: str) -> None:
        url = urlsplit(self.path)
        self.hub.requests.append(Request(method, url.path))
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        query = parse_qs(url.query)
        segments = [unquote(part) for part in url.path.strip("/").split("/")]
        try:
            if segments[:1] == ["api"]:
                self._api(method, segments[1:], query, body)
            else:
                self._resolve(method, segments)
        except HubError as error:
            self._send_json({"error": str(error), **error.extra}, error.status, error.error_code)

    # /api/...

    def _api(self, method: str, segments: list[str], query: dict, body: bytes) -> None:
        if method == "POST" and segments == ["repos", "create"]:
            return self._create_repo(json.loads(body or b"{}"))
        if method == "POST" and segments == ["validate-yaml"]:
            return self._send_json({"errors": [], "warnings": []})
        if method == "GET" and segments[:1] == ["organizations"] and segments[2:] == ["overview"]:
            return self._org_overview(segments[1])
        repo_type = _TYPE_BY_API_SEGMENT.get(segments[0]) if segments else None
        if repo_type is None or len(segments) < 3:
            raise HubError(404, f"no route for {self.path}")
        repo = self.hub.find_repo(repo_type, f"{segments[1]}/{segments[2]}")
        action, rest = (segments[3], segments[4:]) if len(segments) > 3 else ("", [])
        if method == "GET" and action in ("", "revision"):
            return self._repo_info(repo, rest[0] if rest else "main")
        if method == "GET" and action == "refs":
            return self._refs(repo)
        if method == "GET" and action == "tree" and rest:
            recursive = query.get("recursive", ["false"])[0].lower() in ("1", "true")
            return self._tree(repo, rest[0], "/".join(rest[1:]), recursive)
        if method == "POST" and action == "preupload":
            return self._preupload(json.loads(body or b"{}"))
        if method == "POST" and action == "commit" and rest:
            return self._commit(repo, rest[0], body)
        if action == "branch" and rest:
            return self._branch(method, repo, rest[0], json.loads(body or b"{}"))
        if method == "POST" and action == "tag" and rest:
            return self._tag(repo, rest[0], json.loads(body or b"{}"))
        raise HubError(404, f"no route for {method} {self.path}")

    def _create_repo(self, payload: dict) -> None:
        repo_type = payload.get("type") or "model"
        name, organization = payload["name"], payload.get("organization")
        repo_id = f"{organization}/{name}" if organization else name
        url = f"{self.hub.endpoint}/{URL_PREFIXES[repo_type]}{repo_id}"
        try:
            self.hub.create_repo(repo_type, repo_id)
        except HubError as error:
            # huggingface_hub reads the url from the 409 answer too (create_repo(exist_ok=True)).
            error.extra["url"] = url
            raise
        self._send_json({"url": url, "name": repo_id})

    def _org_overview(self, org: str) -> None:
        self._send_json(
            {
                "name": org,
                "fullname": org,
                "avatarUrl": "",
                "trustedKernelPublisher": org in self.hub.trusted_orgs,
            }
        )

    def _repo_info(self, repo: Repo, revision: str) -> None:
        commit = self.hub.find_commit(repo, revision)
        self._send_json(
            {
                "id": repo.repo_id,
                "sha": commit.sha,
                "private": False,
                "siblings": [{"rfilename": path} for path in sorted(commit.files)],
            }
        )

    def _refs(self, repo: Repo) -> None:
        def refs(kind: str, names: dict[str, str]) -> list[dict]:
            return [
                {"name": name, "ref": f"refs/{kind}/{name}", "targetCommit": sha}
                for name, sha in sorted(names.items())
            ]

        self._send_json(
            {
                "branches": refs("heads", repo.branches),
                "tags": refs("tags", repo.tags),
                "converts": [],
                "pullRequests": [],
            }
        )

    def _tree(self, repo: Repo, revision: str, folder: str, recursive: bool) -> None:
        commit = self.hub.find_commit(repo, revision)
        prefix = f"{folder.strip('/')}/" if folder.strip("/") else ""
        entries: dict[str, dict] = {}
        for path, data in commit.files.items():
            if not path.startswith(prefix):
                continue
            parts = path[len(prefix):].split("/")
            for depth in range(1, len(parts)):
                if not recursive and depth > 1:
                    break
                directory = prefix + "/".join(parts[:depth])
                digest = hashlib.sha1(directory.encode()).hexdigest()
                entries[directory] = {"type": "directory", "path": directory, "oid": digest}
            if recursive or len(parts) == 1:
                entries[path] = {
                    "type": "file", "path": path, "size": len(data), "oid": git_blob_sha(data)
                }
        if prefix and not entries:
            raise HubError(404, f"{folder} does not exist at {revision}", "EntryNotFound")
        self._send_json([entries[path] for path in sorted(entries)])

    def _preupload(self, payload: dict) -> None:
        files = [
            {"path": item["path"], "uploadMode": "regular", "shouldIgnore": False}
            for item in payload.get("files", [])
        ]
        self._send_json({"files": files})

    def _commit(self, repo: Repo, branch: str, body: bytes) -> None:
        message, additions, deletions = "", {}, []
        for line in body.splitlines():
            if not line.strip():
                continue
            item = json.loads(line)
            key, value = item["key"], item["value"]
            if key == "header":
                message = value.get("summary", "")
            elif key == "file":
                additions[value["path"]] = base64.b64decode(value["content"])
            elif key in ("deletedFile", "deletedFolder"):
                deletions.append(value["path"])
            else:
                raise HubError(400, f"this test Hub does not support {key!r} commit items")
        commit = self.hub.commit(repo, branch, message, additions, tuple(deletions))
        prefix = URL_PREFIXES[repo.repo_type]
        self._send_json(
            {
                "success": True,
                "commitOid": commit.sha,
                "commitUrl": f"{self.hub.endpoint}/{prefix}{repo.repo_id}/commit/{commit.sha}",
                "pullRequestUrl": None,
            }
        )

    def _branch(self, method: str, repo: Repo, branch: str, payload: dict) -> None:
        if method == "DELETE":
            if repo.branches.pop(branch, None) is None:
                raise HubError(404, f"Invalid rev id: {branch}", "RevisionNotFound")
            return self._send_json({})
        if branch in repo.branches:
            raise HubError(409, f"Reference already exists: refs/heads/{branch}")
        start = self.hub.find_commit(repo, payload.get("startingPoint") or "main")
        repo.branches[branch] = start.sha
        self._send_json({})

    def _tag(self, repo: Repo, revision: str, payload: dict) -> None:
        tag = payload["tag"]
        if tag in repo.tags:
            raise HubError(409, f"Tag already exists: {tag}")
        repo.tags[tag] = self.hub.find_commit(repo, revision).sha
        self._send_json({})

    # /{prefix}{org}/{name}/resolve/{revision}/{path}

    def _resolve(self, method: str, segments: list[str]) -> None:
        repo_type = _TYPE_BY_URL_PREFIX.get(segments[0], "model")
        if repo_type != "model":
            segments = segments[1:]
        if method not in ("GET", "HEAD") or len(segments) < 5 or segments[2] != "resolve":
            raise HubError(404, f"no route for {method} {self.path}")
        repo = self.hub.find_repo(repo_type, f"{segments[0]}/{segments[1]}")
        commit = self.hub.find_commit(repo, segments[3])
        path = "/".join(segments[4:])
        if path not in commit.files:
            raise HubError(404, f"Entry not found: {path}", "EntryNotFound")
        data = commit.files[path]
        self.send_response(200)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(len(data)))
        self.send_header("ETag", f'"{git_blob_sha(data)}"')
        self.send_header("X-Repo-Commit", commit.sha)
        self.end_headers()
        if method == "GET":
            self.wfile.write(data)

    def _send_json(self, payload, status: int = 200, error_code: str | None = None) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        if error_code is not None:
            self.send_header("X-Error-Code", error_code)
            self.send_header("X-Error-Message", json.loads(data).get("error", ""))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)
