"""The servers the registry tests run on this machine, all bound to 127.0.0.1.

- `LocalRegistry`: Debian's docker-registry (CNCF distribution 2.8), configured as
  `devstack.stack.ensure_registry` configures the stack's, on a free port with its own users.
- `Front`: a small HTTP proxy in front of a registry that answers some requests itself
  (429 with Retry-After, 413) and passes the rest on: how the tests get the answers Docker
  Hub sends when it throttles, which a local registry never does.
- `NotificationBridge`: receives the registry's push notifications and records each pushed
  manifest in moto with `put_image`, standing in for ECR's own bookkeeping so that
  `describe_images` sees what was pushed to the registry behind the endpoint override.
- `upload_image`: pushes a small image through the registry API alone (no Docker engine).
"""

from __future__ import annotations

import base64
import hashlib
import http.client
import json
import re
import secrets
import shutil
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import yaml

SCHEMA2 = "application/vnd.docker.distribution.manifest.v2+json"
_LOGGED_REQUEST = re.compile(
    r'msg="response completed".*?http\.request\.method=(\w+).*?http\.request\.uri="([^"]+)"'
    r".*?http\.response\.status=(\d+)"
)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until(what: str, check: Callable[[], bool], timeout: float, process=None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"{what} exited with {process.returncode}")
        time.sleep(0.1)
    raise RuntimeError(f"{what} did not come up within {timeout:.0f}s")


def basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


@dataclass
class LoggedRequest:
    method: str
    uri: str
    status: int


class LocalRegistry:
    """A docker-registry process of a test's own (htpasswd auth when `users` are given)."""

    def __init__(self, root: Path, users: dict[str, str], notify: str | None = None) -> None:
        self.root = root
        self.users = users
        self.notify = notify
        self.port = free_port()
        self.host = f"127.0.0.1:{self.port}"
        self.url = f"http://{self.host}"
        self.log = root / "registry.log"
        self.process: subprocess.Popen | None = None

    def start(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        config: dict = {
            "version": 0.1,
            "log": {"level": "info", "formatter": "text"},
            "storage": {
                "filesystem": {"rootdirectory": str(self.root / "data")},
                "delete": {"enabled": True},
            },
            "http": {"addr": self.host, "secret": secrets.token_hex(16)},
        }
        if self.users:
            lines = []
            for user, password in self.users.items():
                lines.append(subprocess.run(  # -i: the password through stdin, as the stack does
                    ["htpasswd", "-niB", user], input=password, capture_output=True, text=True,
                    check=True,
                ).stdout.strip())
            (self.root / "htpasswd").write_text("\n".join(lines) + "\n")
            config["auth"] = {"htpasswd": {"realm": "test", "path": str(self.root / "htpasswd")}}
        if self.notify:
            config["notifications"] = {"endpoints": [{
                "name": "bridge", "url": self.notify, "timeout": "2s", "threshold": 3,
                "backoff": "1s",
            }]}
        (self.root / "config.yml").write_text(yaml.safe_dump(config))
        with open(self.log, "ab") as out:
            self.process = subprocess.Popen(
                ["docker-registry", "serve", str(self.root / "config.yml")],
                stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            )
        wait_until(f"registry {self.host}", self.answers, 30, self.process)

    def answers(self) -> bool:
        try:
            return httpx.get(f"{self.url}/v2/", timeout=1).status_code in (200, 401)
        except httpx.HTTPError:
            return False

    def stop(self, sig: int = signal.SIGTERM) -> None:
        """Stop the process (SIGKILL for a registry that dies without notice)."""
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(sig)
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(10)

    def requests(self) -> list[LoggedRequest]:
        """Every request the registry logged, in order."""
        text = self.log.read_text(errors="replace") if self.log.exists() else ""
        return [
            LoggedRequest(m[1], m[2], int(m[3])) for m in _LOGGED_REQUEST.finditer(text)
        ]

    def uploads(self) -> list[LoggedRequest]:
        """The requests that sent data: blob uploads and manifest writes."""
        return [r for r in self.requests() if r.method in ("POST", "PATCH", "PUT")]

    def auth_header(self, user: str | None = None) -> dict[str, str]:
        if not self.users:
            return {}
        user = user or next(iter(self.users))
        return {"Authorization": basic(user, self.users[user])}


def image_config(payload: bytes) -> bytes:
    """The config blob `upload_image` makes for a layer; its sha256 is the image ID."""
    layer = "sha256:" + hashlib.sha256(payload).hexdigest()
    return json.dumps({
        "architecture": "amd64", "os": "linux", "config": {},
        "rootfs": {"type": "layers", "diff_ids": [layer]},
    }).encode()


def image_id(payload: bytes) -> str:
    return "sha256:" + hashlib.sha256(image_config(payload)).hexdigest()


def upload_image(
    registry: LocalRegistry, name: str, tag: str, payload: bytes | None = None
) -> tuple[str, str]:
    """Push a one-layer image through the registry API; returns (manifest digest, image ID)."""
    payload = payload or secrets.token_bytes(64)
    headers = registry.auth_header()
    base = f"{registry.url}/v2/{name}"

    def blob(data: bytes) -> str:
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        started = httpx.post(f"{base}/blobs/uploads/", headers=headers, timeout=10)
        started.raise_for_status()
        location = started.headers["Location"]
        if location.startswith("/"):
            location = registry.url + location
        location = httpx.URL(location).copy_merge_params({"digest": digest})
        done = httpx.put(location, content=data, headers={
            **headers, "Content-Type": "application/octet-stream"}, timeout=10)
        done.raise_for_status()
        return digest

    layer = blob(payload)
    config = image_config(payload)
    config_digest = blob(config)
    manifest = json.dumps({
        "schemaVersion": 2, "mediaType": SCHEMA2,
        "config": {"mediaType": "application/vnd.docker.container.image.v1+json",
                   "size": len(config), "digest": config_digest},
        "layers": [{"mediaType": "application/vnd.docker.image.rootfs.diff.tar.gzip",
                    "size": len(payload), "digest": layer}],
    }).encode()
    put = httpx.put(f"{base}/manifests/{tag}", content=manifest,
                    headers={**headers, "Content-Type": SCHEMA2}, timeout=10)
    put.raise_for_status()
    return put.headers["Docker-Content-Digest"], config_digest


# -- a front that answers in a registry's place -------------------------------------------

Rule = Callable[[str, str, int], "tuple[int, dict[str, str]] | None"]
"""(method, path, number of the request) -> an answer to give instead, or None to pass on."""


class Front:
    """An HTTP proxy on a free port in front of `upstream` (host:port), with a rule.

    It keeps the Host header, so the registry's upload URLs point back at the front and every
    request of a push passes through it. `seen` lists (method, path, status) as answered.
    """

    def __init__(self, upstream: str, rule: Rule) -> None:
        self.upstream = upstream
        self.rule = rule
        self.seen: list[tuple[str, str, int]] = []
        self._lock = threading.Lock()
        front = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args) -> None:
                pass

            def _body(self) -> bytes:
                if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
                    data = b""
                    while True:
                        size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                        if size == 0:
                            self.rfile.readline()
                            return data
                        data += self.rfile.read(size)
                        self.rfile.readline()
                return self.rfile.read(int(self.headers.get("Content-Length") or 0))

            def _handle(self) -> None:
                body = self._body()
                with front._lock:
                    number = len(front.seen) + 1
                    answer = front.rule(self.command, self.path, number)
                if answer is not None:
                    status, headers = answer
                    self._reply(status, headers, b"")
                    return
                connection = http.client.HTTPConnection(front.upstream, timeout=60)
                headers = {k: v for k, v in self.headers.items()
                           if k.lower() not in ("transfer-encoding", "content-length")}
                connection.request(self.command, self.path, body=body or None, headers=headers)
                response = connection.getresponse()
                data = response.read()
                passed = {k: v for k, v in response.getheaders()
                          if k.lower() not in ("transfer-encoding", "content-length", "connection")}
                if self.command == "HEAD":
                    passed["Content-Length"] = response.getheader("Content-Length", "0")
                self._reply(response.status, passed, data)
                connection.close()

            def _reply(self, status: int, headers: dict[str, str], data: bytes) -> None:
                with front._lock:
                    front.seen.append((self.command, self.path, status))
                self.send_response(status)
                for key, value in headers.items():
                    self.send_header(key, value)
                if "Content-Length" not in headers:
                    self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(data)

            do_GET = do_HEAD = do_POST = do_PUT = do_PATCH = do_DELETE = _handle

        self.server = ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
        self.server.daemon_threads = True
        self.host = f"127.0.0.1:{self.server.server_address[1]}"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


# -- registry notifications -> moto -------------------------------------------------------


class NotificationBridge:
    """Records every manifest pushed to `registry` in moto's ECR, as ECR itself would.

    The registry posts an event per push (`notifications.endpoints`: `url`); for a tagged
    manifest the bridge fetches it from the registry named by `watch` and calls `put_image`
    with its digest.
    """

    def __init__(self, ecr_client) -> None:
        self.ecr = ecr_client
        self.registry_url = ""
        self.auth: dict[str, str] = {}
        self.recorded: list[tuple[str, str, str]] = []
        self.errors: list[str] = []
        bridge = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:
                pass

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                try:
                    for event in json.loads(body).get("events", []):
                        bridge._record(event)
                except Exception as e:  # the test reads `errors`; the registry needs a 200
                    bridge.errors.append(repr(e))
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

        self.server = ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/events"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self._thread.start()

    def watch(self, registry: LocalRegistry, user: str) -> None:
        """Fetch pushed manifests from `registry`, as `user`."""
        self.registry_url, self.auth = registry.url, registry.auth_header(user)

    def _record(self, event: dict) -> None:
        target = event.get("target", {})
        if event.get("action") != "push" or not target.get("tag"):
            return
        if "manifest" not in target.get("mediaType", ""):
            return
        repository, digest, tag = target["repository"], target["digest"], target["tag"]
        manifest = httpx.get(
            f"{self.registry_url}/v2/{repository}/manifests/{digest}",
            headers={**self.auth, "Accept": target["mediaType"]}, timeout=10,
        )
        manifest.raise_for_status()
        self.ecr.put_image(
            repositoryName=repository, imageManifest=manifest.text, imageTag=tag,
            imageManifestMediaType=target["mediaType"], imageDigest=digest,
        )
        self.recorded.append((repository, tag, digest))

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


# -- for fixtures: start any number, stop them all at the end --------------------------------


@contextmanager
def registries(root: Path) -> Iterator[Callable[..., LocalRegistry]]:
    """`start(users, notify=None)` starts a LocalRegistry under `root`; all stop on exit."""
    for binary in ("docker-registry", "htpasswd"):
        if shutil.which(binary) is None:
            raise RuntimeError(f"{binary} is not installed; run `make setup`")
    started: list[LocalRegistry] = []

    def start(users: dict[str, str] | None = None, notify: str | None = None) -> LocalRegistry:
        registry = LocalRegistry(root / f"registry-{len(started)}", users or {}, notify)
        started.append(registry)
        registry.start()
        return registry

    try:
        yield start
    finally:
        for registry in started:
            registry.stop()


@contextmanager
def fronts() -> Iterator[Callable[..., Front]]:
    """`start(upstream, rule)` starts a Front; all stop on exit."""
    started: list[Front] = []

    def start(upstream: str, rule: Rule) -> Front:
        front = Front(upstream, rule)
        started.append(front)
        return front

    try:
        yield start
    finally:
        for front in started:
            front.stop()
