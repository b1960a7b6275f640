"""A small in-memory stand-in for the part of the Hugging Face Hub HTTP API that huggingface_hub 1.x/2.x uses for
``create_repo``, ``create_branch``, ``upload_folder`` (preupload + ndjson commit, every file "regular"),
``model_info`` / ``repo_info``, ``list_repo_refs``, ``list_repo_tree`` and ``hf_hub_download`` /
``snapshot_download`` (``HEAD``/``GET /{repo}/resolve/{revision}/{path}``).

    with HubServer(tokens={"hf_writer"}) as hub:    # listens on 127.0.0.1:<free port>
        os.environ["HF_ENDPOINT"] = hub.url

Routes (repo ids are ``namespace/name``; revisions may be URL-quoted):
    POST /api/repos/create                              {"name", "organization", "type", "private"|"visibility"}
    POST /api/validate-yaml                             -> {"errors": [], "warnings": []}
    POST /api/models/{repo}/branch/{branch}             {"startingPoint"?}
    POST /api/models/{repo}/preupload/{revision}        -> uploadMode "regular" for every file
    POST /api/models/{repo}/commit/{revision}           application/x-ndjson: header, file (base64), deletedFile,
                                                        deletedFolder
    GET  /api/models/{repo}[/revision/{revision}]       model info (sha, siblings, tags from README front matter)
    GET  /api/models/{repo}/refs                        branches
    GET  /api/models/{repo}/tree/{revision}[/{path}]    ?recursive=
    HEAD/GET /{repo}/resolve/{revision}/{path}          X-Repo-Commit, ETag (git blob sha1), Content-Length

Errors carry ``X-Error-Code`` (RepoNotFound, RevisionNotFound, EntryNotFound) like the Hub, so the client raises
its own typed errors. Writes need ``Authorization: Bearer <token>`` with a token from ``tokens``; private repos
need one to be read. ``requests`` records (method, path) of every call for the tests to inspect.
No third-party imports: the server only uses the standard library.
"""
from __future__ import annotations

import base64
import hashlib
import json
import re
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, unquote, urlsplit

_REPO = r"(?P<repo>[\w.\-]+/[\w.\-]+)"


def git_blob_sha1(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


class _Repo:
    def __init__(self, repo_id: str, private: bool):
        self.id = repo_id
        self.private = private
        self.commits: dict[str, dict] = {}
        self.branches: dict[str, str] = {}
        first = self._new_commit({".gitattributes": b"*.onnx filter=lfs diff=lfs merge=lfs -text\n"}, None,
                                 "initial commit")
        self.branches["main"] = first

    def _new_commit(self, files: dict[str, bytes], parent: str | None, message: str) -> str:
        sha = hashlib.sha1(f"{self.id}|{parent}|{message}|{time.time_ns()}|{len(self.commits)}".encode()).hexdigest()
        self.commits[sha] = {"files": dict(files), "parent": parent, "message": message}
        return sha

    def resolve(self, revision: str) -> str | None:
        if revision in self.branches:
            return self.branches[revision]
        if revision in self.commits:
            return revision
        return None


class HubServer:
    """Threaded HTTP server on 127.0.0.1; use as a context manager (or start()/stop())."""

    def __init__(self, tokens: set[str] = frozenset({"hf_test_token"}), user: str = "tester"):
        self.tokens = set(tokens)
        self.user = user
        self.repos: dict[str, _Repo] = {}
        self.requests: list[tuple[str, str]] = []
        self.lock = threading.Lock()
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> HubServer:
        server = self

        class Handler(_Handler):
            hub = server

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(target=self._httpd.serve_forever, name="hub-server", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None

    def __enter__(self) -> HubServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    @property
    def url(self) -> str:
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}"

    # ------------------------------------------------------------------ helpers for tests
    def files(self, repo_id: str, revision: str = "main") -> dict[str, bytes]:
        r = self.repos[repo_id]
        return dict(r.commits[r.resolve(revision)]["files"])


class _HTTPError(Exception):
    def __init__(self, status: int, message: str, code: str | None = None, **extra):
        super().__init__(message)
        self.status, self.message, self.code, self.extra = status, message, code, extra


class _Handler(BaseHTTPRequestHandler):
    hub: HubServer
    protocol_version = "HTTP/1.1"

    def log_message(self, *args) -> None:  # quiet
        pass

    # ------------------------------------------------------------------ plumbing
    def _send(self, status: int, body: bytes = b"", headers: dict[str, str] | None = None,
              content_type: str = "application/json", head: bool = False) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        if not head and body:
            self.wfile.write(body)

    def _json(self, status: int, obj, headers=None, head=False) -> None:
        self._send(status, json.dumps(obj).encode(), headers, head=head)

    def _body(self) -> bytes:
        n = int(self.headers.get("Content-Length") or 0)
        if n:
            return self.rfile.read(n)
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            out = b""
            while True:
                size = int(self.rfile.readline().strip() or b"0", 16)
                if size == 0:
                    self.rfile.readline()
                    return out
                out += self.rfile.read(size)
                self.rfile.readline()
        return b""

    def _token(self) -> str | None:
        auth = self.headers.get("Authorization") or ""
        if not auth.lower().startswith("bearer "):
            return None
        tok = auth[7:].strip()
        if tok not in self.hub.tokens:
            raise _HTTPError(401, "Invalid credentials in Authorization header")
        return tok

    def _repo(self, repo_id: str, write: bool = False) -> _Repo:
        tok = self._token()
        r = self.hub.repos.get(repo_id)
        if r is None or (r.private and tok is None):
            raise _HTTPError(401 if tok is None else 404, f"Repository Not Found for url: {self.path}", "RepoNotFound")
        if write and tok is None:
            raise _HTTPError(401, "You must be authenticated to write", None)
        return r

    def _rev(self, r: _Repo, revision: str) -> str:
        sha = r.resolve(unquote(revision))
        if sha is None:
            raise _HTTPError(404, f"Invalid rev id: {unquote(revision)}", "RevisionNotFound")
        return sha

    def _dispatch(self, method: str) -> None:
        url = urlsplit(self.path)
        path, query = url.path, parse_qs(url.query)
        with self.hub.lock:
            self.hub.requests.append((method, path))
        routes = [
            ("POST", r"^/api/repos/create$", self._create_repo),
            ("POST", r"^/api/validate-yaml$", self._validate_yaml),
            ("POST", rf"^/api/models/{_REPO}/branch/(?P<branch>.+)$", self._create_branch),
            ("POST", rf"^/api/models/{_REPO}/preupload/(?P<rev>[^/]+)$", self._preupload),
            ("POST", rf"^/api/models/{_REPO}/commit/(?P<rev>[^/]+)$", self._commit),
            ("GET", rf"^/api/models/{_REPO}/refs$", self._refs),
            ("GET", rf"^/api/models/{_REPO}/tree/(?P<rev>[^/]+)(?:/(?P<sub>.*))?$", self._tree),
            ("GET", rf"^/api/models/{_REPO}(?:/revision/(?P<rev>[^/]+))?$", self._info),
            ("GET", rf"^/{_REPO}/resolve/(?P<rev>[^/]+)/(?P<file>.+)$", self._resolve),
            ("HEAD", rf"^/{_REPO}/resolve/(?P<rev>[^/]+)/(?P<file>.+)$", self._resolve),
        ]
        try:
            for m, pattern, fn in routes:
                match = re.match(pattern, path)
                if m == method and match:
                    with self.hub.lock:
                        return fn(method=method, query=query, **match.groupdict())
            raise _HTTPError(404, f"no route for {method} {path}")
        except _HTTPError as e:
            headers = {"X-Error-Message": e.message}
            if e.code:
                headers["X-Error-Code"] = e.code
            self._json(e.status, {"error": e.message, **e.extra}, headers, head=(method == "HEAD"))

    def do_GET(self):
        self._dispatch("GET")

    def do_HEAD(self):
        self._dispatch("HEAD")

    def do_POST(self):
        self._dispatch("POST")

    # ------------------------------------------------------------------ routes
    def _create_repo(self, method, query):
        body = json.loads(self._body() or b"{}")
        if self._token() is None:
            raise _HTTPError(401, "You must be authenticated to create a repo")
        if body.get("type") not in (None, "model"):
            raise _HTTPError(400, "this test server only hosts model repos")
        repo_id = f"{body.get('organization') or self.hub.user}/{body['name']}"
        if repo_id in self.hub.repos:
            raise _HTTPError(409, "You already created this model repo", url=f"{self.hub.url}/{repo_id}")
        private = bool(body.get("private")) or body.get("visibility") == "private"
        self.hub.repos[repo_id] = _Repo(repo_id, private)
        self._json(200, {"url": f"{self.hub.url}/{repo_id}", "name": repo_id, "id": repo_id})

    def _validate_yaml(self, method, query):
        self._body()
        self._json(200, {"errors": [], "warnings": []})

    def _create_branch(self, method, query, repo, branch):
        body = json.loads(self._body() or b"{}")
        r = self._repo(repo, write=True)
        branch = unquote(branch)
        if branch in r.branches:
            raise _HTTPError(409, f"Reference already exists: refs/heads/{branch}")
        r.branches[branch] = self._rev(r, body.get("startingPoint") or "main")
        self._json(200, {})

    def _preupload(self, method, query, repo, rev):
        body = json.loads(self._body())
        r = self._repo(repo, write=True)
        files = r.commits[self._rev(r, rev)]["files"]
        out = []
        for f in body["files"]:
            old = files.get(f["path"])
            out.append({"path": f["path"], "uploadMode": "regular", "shouldIgnore": False,
                        "oid": git_blob_sha1(old) if old is not None else None})
        self._json(200, {"files": out, "commitOid": self._rev(r, rev)})

    def _commit(self, method, query, repo, rev):
        lines = [json.loads(line) for line in self._body().splitlines() if line.strip()]
        r = self._repo(repo, write=True)
        branch = unquote(rev)
        if branch not in r.branches:
            raise _HTTPError(404, f"Invalid rev id: {branch} (commits go to a branch)", "RevisionNotFound")
        if query.get("create_pr"):
            raise _HTTPError(400, "pull requests are not supported by this test server")
        parent = r.branches[branch]
        files = dict(r.commits[parent]["files"])
        header = {}
        for item in lines:
            key, v = item["key"], item["value"]
            if key == "header":
                header = v
                if v.get("parentCommit") and v["parentCommit"] != parent:
                    raise _HTTPError(412, "parent commit is not the head of the branch")
            elif key == "file":
                if v.get("encoding") != "base64":
                    raise _HTTPError(400, "file content must be base64")
                files[v["path"]] = base64.b64decode(v["content"])
            elif key == "deletedFile":
                if v["path"] not in files:
                    raise _HTTPError(404, f"{v['path']} does not exist", "EntryNotFound")
                del files[v["path"]]
            elif key == "deletedFolder":
                prefix = v["path"].rstrip("/") + "/"
                for p in [p for p in files if p.startswith(prefix)]:
                    del files[p]
            else:  # lfsFile / copies: never requested, since preupload answers "regular" for everything
                raise _HTTPError(400, f"unsupported commit operation {key!r}")
        sha = r._new_commit(files, parent, header.get("summary", ""))
        r.branches[branch] = sha
        self._json(200, {"commitUrl": f"{self.hub.url}/{repo}/commit/{sha}", "commitOid": sha,
                         "pullRequestUrl": None, "success": True})

    def _refs(self, method, query, repo):
        r = self._repo(repo)
        self._json(200, {"branches": [{"name": b, "ref": f"refs/heads/{b}", "targetCommit": s}
                                      for b, s in r.branches.items()], "tags": [], "converts": []})

    def _tree(self, method, query, repo, rev, sub=None):
        r = self._repo(repo)
        files = r.commits[self._rev(r, rev)]["files"]
        prefix = (unquote(sub).rstrip("/") + "/") if sub else ""
        recursive = (query.get("recursive") or ["False"])[0].lower() == "true"
        entries, folders = [], set()
        for p in sorted(files):
            if not p.startswith(prefix):
                continue
            rest = p[len(prefix):]
            if "/" in rest and not recursive:
                folders.add(prefix + rest.split("/")[0])
                continue
            if recursive:
                parts = rest.split("/")[:-1]
                for i in range(len(parts)):
                    folders.add(prefix + "/".join(parts[:i + 1]))
            entries.append({"type": "file", "oid": git_blob_sha1(files[p]), "size": len(files[p]), "path": p})
        entries += [{"type": "directory", "oid": hashlib.sha1(f.encode()).hexdigest(), "size": 0, "path": f}
                    for f in sorted(folders)]
        self._json(200, entries)

    def _info(self, method, query, repo, rev=None):
        r = self._repo(repo)
        sha = self._rev(r, rev or "main")
        files = r.commits[sha]["files"]
        tags, pipeline_tag, library = [], None, None
        readme = files.get("README.md", b"").decode("utf-8", "replace")
        m = re.match(r"^---\n(.*?)\n---\n", readme, re.S)
        if m:  # tiny front-matter reader: "key: value" and "- item" lists under "tags:"
            key = None
            for line in m.group(1).splitlines():
                if line.startswith("- ") and key == "tags":
                    tags.append(line[2:].strip())
                elif ":" in line and not line.startswith(" "):
                    key, _, val = line.partition(":")
                    key, val = key.strip(), val.strip()
                    if key == "pipeline_tag":
                        pipeline_tag = val
                    elif key == "library_name":
                        library = val
        self._json(200, {"id": repo, "modelId": repo, "sha": sha, "private": r.private, "tags": tags,
                         "pipeline_tag": pipeline_tag, "library_name": library,
                         "lastModified": "2024-01-01T00:00:00.000Z", "createdAt": "2024-01-01T00:00:00.000Z",
                         "siblings": [{"rfilename": p} for p in sorted(files)]})

    def _resolve(self, method, query, repo, rev, file):
        r = self._repo(repo)
        sha = self._rev(r, rev)
        files = r.commits[sha]["files"]
        file = unquote(file)
        if file not in files:
            raise _HTTPError(404, f"Entry not found: {file}", "EntryNotFound")
        data = files[file]
        etag = git_blob_sha1(data)
        headers = {"X-Repo-Commit": sha, "ETag": f'"{etag}"', "Accept-Ranges": "bytes"}
        rng = self.headers.get("Range")
        m = re.match(r"bytes=(\d+)-$", rng or "")
        if m and method == "GET":
            start = int(m.group(1))
            headers["Content-Range"] = f"bytes {start}-{len(data) - 1}/{len(data)}"
            return self._send(206, data[start:], headers, "application/octet-stream")
        self._send(200, data, headers, "application/octet-stream", head=(method == "HEAD"))


# ------------------------------------------------------------------ pytest fixtures (import them into a test module)
TOKEN = "hf_test_token"

try:
    import pytest
except ImportError:  # pragma: no cover
    pytest = None

if pytest is not None:
    @pytest.fixture(scope="module")
    def hub_server():
        with HubServer(tokens={TOKEN, "hf_other_token"}) as hub:
            yield hub

    @pytest.fixture
    def hub(hub_server, monkeypatch, tmp_path):
        """The server, with this process pointed at it: HF_ENDPOINT (read at call time by hf_fast.hub), offline mode
        off in the environment *and* in huggingface_hub.constants (read once at import), no ambient token, and
        the Hub cache in a temporary folder."""
        from huggingface_hub import constants

        monkeypatch.setenv("HF_ENDPOINT", hub_server.url)
        monkeypatch.setenv("HF_HUB_OFFLINE", "0")
        monkeypatch.setenv("TRANSFORMERS_OFFLINE", "0")
        monkeypatch.delenv("HF_TOKEN", raising=False)
        monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
        monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub-cache"))
        monkeypatch.setattr(constants, "HF_TOKEN_PATH", str(tmp_path / "no-token"))
        monkeypatch.setattr(constants, "HF_STORED_TOKENS_PATH", str(tmp_path / "no-stored-tokens"))
        hub_server.requests.clear()
        return hub_server
