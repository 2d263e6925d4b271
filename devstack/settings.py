"""Where the local stack and the Kubernetes test bed keep their state, and the registry's
address and credentials they share: `StackPaths` (the state folder, `.state/` unless
FERRYMAN_STATE_DIR) and `ClusterPaths` (the test bed's part of it), `REGISTRY` and
`REGISTRY_USER`, and the secrets made once under the state folder (`registry_password`,
`webhook_secret`, `dockerhub_token`). devstack/stack.py, devstack/cluster.py and the test
bed's modules read them here; it imports none of them.
"""

from __future__ import annotations

import os
import secrets
from dataclasses import dataclass
from pathlib import Path

from devstack.processes import read_record, write_record
from flows import ROOT

REGISTRY = "127.0.0.1:5000"
REGISTRY_USER = "ferryman"


@dataclass(frozen=True)
class StackPaths:
    """Where the stack keeps its state: `.state/` in the checkout unless FERRYMAN_STATE_DIR."""

    root: Path

    @classmethod
    def default(cls) -> StackPaths:
        return cls(Path(os.environ.get("FERRYMAN_STATE_DIR", ROOT / ".state")).resolve())

    @property
    def logs(self) -> Path:
        return self.root / "logs"

    @property
    def registry(self) -> Path:
        return self.root / "registry"

    @property
    def webhook_secret(self) -> Path:
        return self.root / "webhook" / "secret"

    @property
    def dockerhub_token(self) -> Path:
        return self.root / "webhook" / "dockerhub-token"

    @property
    def prefect_home(self) -> Path:
        return self.root / "prefect"

    @property
    def record(self) -> Path:
        """What `up` started itself, so `down` stops only that."""
        return self.root / "stack.json"

    def load_record(self) -> dict:
        return read_record(self.record)

    def save_record(self, record: dict) -> None:
        write_record(self.record, record)


def stored_secret(file: Path) -> str:
    """A random secret made once under the state folder, readable by root only."""
    if not file.exists():
        file.parent.mkdir(parents=True, exist_ok=True)
        file.touch(mode=0o600)
        file.write_text(secrets.token_urlsafe(24))
    return file.read_text().strip()


def registry_password(paths: StackPaths) -> str:
    """The local registry's password (user `ferryman`)."""
    return stored_secret(paths.registry / "password")


def webhook_secret(paths: StackPaths) -> str:
    """The shared secret the registry sends to the webhook receiver (a bearer token)."""
    return stored_secret(paths.webhook_secret)


def dockerhub_token(paths: StackPaths) -> str:
    """The receiver's Docker Hub token (`/hooks/dockerhub?token=`): a secret apart from the
    registry's, since it travels in URLs."""
    return stored_secret(paths.dockerhub_token)


@dataclass(frozen=True)
class ClusterPaths:
    """Where the test bed keeps its state: `<stack state>/kubernetes/`."""

    root: Path

    @classmethod
    def of(cls, paths: StackPaths) -> ClusterPaths:
        return cls(paths.root / "kubernetes")

    @property
    def pki(self) -> Path:
        return self.root / "pki"

    @property
    def config(self) -> Path:
        return self.root / "config"

    @property
    def logs(self) -> Path:
        return self.root / "logs"

    @property
    def containerd(self) -> Path:
        return self.root / "containerd"

    @property
    def containerd_socket(self) -> Path:
        return self.containerd / "containerd.sock"

    @property
    def cni_conf(self) -> Path:
        return self.root / "cni" / "net.d"

    @property
    def ipam(self) -> Path:
        return self.root / "cni" / "ipam"

    @property
    def kubelet(self) -> Path:
        return self.root / "kubelet"

    @property
    def admin_kubeconfig(self) -> Path:
        return self.config / "admin.kubeconfig"

    @property
    def ferryman_kubeconfig(self) -> Path:
        """The identity Ferryman and its tests use: ServiceAccount `ferryman`, not an admin."""
        return self.root / "ferryman.kubeconfig"

    @property
    def record(self) -> Path:
        return self.root / "cluster.json"

    def load_record(self) -> dict:
        return read_record(self.record)

    def save_record(self, record: dict) -> None:
        write_record(self.record, record)
