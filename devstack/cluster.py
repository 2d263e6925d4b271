"""The Kubernetes test bed: one real node on this machine, from Kubernetes' own Go modules.

`up` builds or reuses the binaries (devstack/kubernetes/build.sh, cached per version outside
the checkout), then starts etcd, kube-apiserver, kube-controller-manager, kube-scheduler, a
containerd of its own beside Docker's, kubelet and kube-proxy (iptables mode), waits for the
node to be Ready and applies Ferryman's identity (devstack.cluster_access). A second `up`
changes nothing; a component whose command line or configuration changed is restarted.
`down` removes what `up` made: its processes, the pods' sandboxes (through kubelet, so the
CNI plugins release their addresses), kube-proxy's and kubelet's rules, its own iptables chains, its
two bridges with their routes, mounts and cgroups. Certificates, etcd's
data and containerd's images stay under `.state/kubernetes/` unless `purge` is asked, so the
next `up` is warm.

The addresses, routes and iptables rules are devstack/cluster_network.py's.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from devstack import cluster_access, cluster_pki
from devstack.cluster_config import (
    CNI_BIN,
    NODE,
    PAUSE_IMAGE,
    cni_config,
    containerd_config,
    kube_proxy_config,
    kubelet_config,
    registry_hosts,
)
from devstack.cluster_health import COMPONENTS, api_ready, http_get, is_up, started_any
from devstack.cluster_network import (
    API_PORT,
    API_SERVER,
    NODE_IP,
    POD_RANGE,
    SERVICE_IP,
    SERVICE_RANGE,
    ensure_firewall,
    ensure_routes,
    remove_firewall,
    remove_interfaces,
    remove_kubelet_chains,
    run,
)
from devstack.cluster_pki import Identity
from devstack.processes import (  # the stack's process helpers, shared rather than copied
    Say,
    alive,
    spawn,
    stop,
    wait_for,
)
from devstack.settings import ClusterPaths, StackPaths
from flows import ROOT
from tasks.errors import StackError

ETCD = "http://127.0.0.1:2379"
ETCD_PEER = "http://127.0.0.1:2380"
BUILD_SCRIPT = ROOT / "devstack" / "kubernetes" / "build.sh"
PROMETHEUS_BUILD_SCRIPT = ROOT / "devstack" / "prometheus" / "build.sh"
BINARIES = ("etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler",
            "kubelet", "kube-proxy", "pause")
# kubelet sets these to its own values when it starts (protectKernelDefaults: false) and has
# no way to leave them; `up` notes the machine's values first and `down` puts them back.
KERNEL_TUNABLES = ("vm/overcommit_memory", "vm/panic_on_oom", "kernel/panic",
                   "kernel/panic_on_oops", "kernel/keys/root_maxkeys", "kernel/keys/root_maxbytes")
CONTROL_PLANE_PORTS = {"kube-controller-manager": 10257, "kube-scheduler": 10259}


@dataclass
class Component:
    """A process of the test bed, how to tell it is ready, and what its settings are."""

    name: str
    argv: list[str]
    ready: Callable[[], bool]
    timeout: float = 60
    files: list[Path] = field(default_factory=list)  # configuration it reads, hashed too
    env: dict[str, str] = field(default_factory=dict)

    def fingerprint(self) -> str:
        h = hashlib.sha256(json.dumps([self.argv, self.env]).encode())
        for f in self.files:
            h.update(f.read_bytes())
        return h.hexdigest()


# -- small helpers ------------------------------------------------------------------------


def _local_tls() -> ssl.SSLContext:
    """For the health ports of controller-manager and scheduler on 127.0.0.1, which serve
    a certificate they make themselves; only liveness is read through it."""
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


def containerd_ready(cp: ClusterPaths) -> bool:
    """A connect first: `ctr` waits 10 s on a socket nobody listens on."""
    with socket.socket(socket.AF_UNIX) as probe:
        try:
            probe.settimeout(1)
            probe.connect(str(cp.containerd_socket))
        except OSError:
            return False
    return _ctr(cp, "version", check=False).returncode == 0


def _ctr(cp: ClusterPaths, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    return run("ctr", "--address", str(cp.containerd_socket), "--namespace", "k8s.io", *args,
                check=check)


def _build(script: Path) -> Path:
    out = subprocess.run(["sh", str(script)], capture_output=True, text=True)
    if out.returncode != 0:
        raise StackError(f"{script} failed:\n{(out.stdout + out.stderr)[-3000:]}")
    return Path(out.stdout.strip().splitlines()[-1])


def prometheus_build(say: Say) -> Path:
    """Prometheus from its Go module (devstack/prometheus): Debian 12's has no Kubernetes
    discovery. The stack's Prometheus container runs it while the test bed is up."""
    folder = _build(PROMETHEUS_BUILD_SCRIPT)
    say(f"prometheus with Kubernetes discovery: {folder / 'prometheus'}")
    return folder / "prometheus"


def prometheus_binary(paths: StackPaths) -> Path | None:
    """The Prometheus the stack's container should run: this one while the test bed is up."""
    built = ClusterPaths.of(paths).load_record().get("prometheus")
    if built and Path(built).exists() and is_up(paths):
        return Path(built)
    return None


def binaries(say: Say) -> Path:
    """Build the binaries once per machine (11 to 35 minutes on 2 cores), then reuse them."""
    cache = Path(os.environ.get("FERRYMAN_K8S_CACHE", "/var/cache/ferryman/kubernetes"))
    version = version_pinned()
    folder = cache / version
    if not all((folder / b).exists() for b in BINARIES):
        say(f"kubernetes {version}: building the binaries from the Go modules into {folder} "
            "(once per machine; tens of minutes)")
    return _build(BUILD_SCRIPT)


def version_pinned() -> str:
    """The Kubernetes version devstack/kubernetes/go.mod requires."""
    for line in (BUILD_SCRIPT.parent / "go.mod").read_text().splitlines():
        parts = line.split()
        if len(parts) >= 2 and parts[0] == "k8s.io/kubernetes" and parts[1].startswith("v"):
            return parts[1]
    raise StackError("devstack/kubernetes/go.mod requires no k8s.io/kubernetes version")


# -- certificates and configuration -------------------------------------------------------


def _identities() -> list[Identity]:
    return [
        Identity("apiserver", "kube-apiserver", ips=(NODE_IP, SERVICE_IP, "127.0.0.1"),
                 dns=("kubernetes", "kubernetes.default", "kubernetes.default.svc",
                      "kubernetes.default.svc.cluster.local"), server=True, client=False),
        # The API server's client identity towards kubelets (logs, exec, port-forward).
        Identity("apiserver-kubelet-client", "kube-apiserver-kubelet-client",
                 groups=("system:masters",)),
        Identity("admin", "ferryman-stack-admin", groups=("system:masters",)),
        Identity("controller-manager", "system:kube-controller-manager"),
        Identity("scheduler", "system:kube-scheduler"),
        Identity("kube-proxy", "system:kube-proxy"),
        Identity("node", f"system:node:{NODE}", groups=("system:nodes",)),
        Identity("kubelet-serving", NODE, ips=(NODE_IP,), dns=(NODE,), server=True,
                 client=False),
    ]


def _write(file: Path, text: str) -> Path:
    file.parent.mkdir(parents=True, exist_ok=True)
    if not file.exists() or file.read_text() != text:
        file.write_text(text)
    return file


def _component_kubeconfig(cp: ClusterPaths, name: str) -> Path:
    file = cp.config / f"{name}.kubeconfig"
    cluster_pki.write_kubeconfig(file, cluster_pki.kubeconfig(
        API_SERVER, str(cp.pki / "ca.crt"),
        {"client-certificate": str(cp.pki / f"{name}.crt"),
         "client-key": str(cp.pki / f"{name}.key")},
    ))
    return file


def components(cp: ClusterPaths, bin_dir: Path) -> list[Component]:
    """Every process of the test bed, in the order `up` starts them."""
    pki = cp.pki
    b = {name: str(bin_dir / name) for name in BINARIES}
    kcm_config = _component_kubeconfig(cp, "controller-manager")
    scheduler_config = _component_kubeconfig(cp, "scheduler")
    node_config = _component_kubeconfig(cp, "node")
    proxy_kubeconfig = _component_kubeconfig(cp, "kube-proxy")
    _component_kubeconfig(cp, "admin")
    containerd_toml = _write(cp.config / "containerd.toml", containerd_config(cp))
    _write(cp.containerd / "certs.d" / "127.0.0.1:5000" / "hosts.toml", registry_hosts())
    cni = _write(cp.cni_conf / "10-ferryman.conflist", cni_config(cp))
    kubelet_yaml = _write(cp.config / "kubelet.yaml", kubelet_config(cp))
    proxy_yaml = _write(cp.config / "kube-proxy.yaml", kube_proxy_config(cp, proxy_kubeconfig))

    def health(port: int) -> Callable[[], bool]:
        return lambda: http_get(f"https://127.0.0.1:{port}/healthz", _local_tls())[0] == 200

    def etcd_healthy() -> bool:
        status, body = http_get(f"{ETCD}/health")
        return status == 200 and '"health":"true"' in body.replace(" ", "")

    return [
        Component("etcd", [
            b["etcd"], "--name", "ferryman", "--data-dir", str(cp.root / "etcd"),
            "--listen-client-urls", ETCD, "--advertise-client-urls", ETCD,
            "--listen-peer-urls", ETCD_PEER, "--initial-advertise-peer-urls", ETCD_PEER,
            "--initial-cluster", f"ferryman={ETCD_PEER}", "--log-level", "warn",
        ], etcd_healthy, 60),
        Component("kube-apiserver", [
            b["kube-apiserver"],
            "--bind-address", NODE_IP, "--advertise-address", NODE_IP,
            "--secure-port", str(API_PORT),
            "--etcd-servers", ETCD,
            "--service-cluster-ip-range", SERVICE_RANGE,
            "--tls-cert-file", str(pki / "apiserver.crt"),
            "--tls-private-key-file", str(pki / "apiserver.key"),
            "--client-ca-file", str(pki / "ca.crt"),
            "--kubelet-client-certificate", str(pki / "apiserver-kubelet-client.crt"),
            "--kubelet-client-key", str(pki / "apiserver-kubelet-client.key"),
            "--kubelet-certificate-authority", str(pki / "ca.crt"),
            "--kubelet-preferred-address-types", "InternalIP",
            "--service-account-issuer", "https://kubernetes.default.svc.cluster.local",
            "--service-account-key-file", str(pki / "sa.pub"),
            "--service-account-signing-key-file", str(pki / "sa.key"),
            "--authorization-mode", "Node,RBAC",
            "--enable-admission-plugins", "NodeRestriction",
            "--allow-privileged=true",
            "--profiling=false",
            "--v", "1",
        ], lambda: api_ready(cp), 120),
        Component("kube-controller-manager", [
            b["kube-controller-manager"],
            "--kubeconfig", str(kcm_config),
            "--authentication-kubeconfig", str(kcm_config),
            "--authorization-kubeconfig", str(kcm_config),
            "--bind-address", "127.0.0.1",
            "--cert-dir", str(cp.root / "controller-manager"),
            "--leader-elect=false",
            "--use-service-account-credentials=true",
            "--service-account-private-key-file", str(pki / "sa.key"),
            "--root-ca-file", str(pki / "ca.crt"),
            "--cluster-cidr", POD_RANGE,
            "--service-cluster-ip-range", SERVICE_RANGE,
            "--profiling=false",
            "--v", "1",
        ], health(CONTROL_PLANE_PORTS["kube-controller-manager"]), 60),
        Component("kube-scheduler", [
            b["kube-scheduler"],
            "--kubeconfig", str(scheduler_config),
            "--authentication-kubeconfig", str(scheduler_config),
            "--authorization-kubeconfig", str(scheduler_config),
            "--bind-address", "127.0.0.1",
            "--cert-dir", str(cp.root / "scheduler"),
            "--leader-elect=false",
            "--profiling=false",
            "--v", "1",
        ], health(CONTROL_PLANE_PORTS["kube-scheduler"]), 60),
        Component("containerd", [
            shutil.which("containerd") or "containerd", "--config", str(containerd_toml),
        ], lambda: containerd_ready(cp), 30,
            [containerd_toml, cni]),
        Component("kubelet", [
            b["kubelet"],
            "--config", str(kubelet_yaml),
            "--kubeconfig", str(node_config),
            "--root-dir", str(cp.kubelet),
            "--hostname-override", NODE,
            "--node-ip", NODE_IP,
            "--v", "1",
        ], lambda: http_get("http://127.0.0.1:10248/healthz")[0] == 200, 90, [kubelet_yaml],
            # kubelet lends the credentials of $HOME/.docker/config.json to every pod: the
            # host's `docker login` must not stand in for a pod's imagePullSecret.
            env={"HOME": str(cp.kubelet / "home")}),
        Component("kube-proxy", [
            b["kube-proxy"], "--config", str(proxy_yaml), "--v", "1",
        ], lambda: http_get("http://127.0.0.1:10256/healthz")[0] == 200, 90, [proxy_yaml]),
    ]


# -- containerd's sandbox image -----------------------------------------------------------


def ensure_pause_image(cp: ClusterPaths, bin_dir: Path, say: Say) -> None:
    """A FROM scratch image around the pause binary, imported straight into containerd."""
    if PAUSE_IMAGE in _ctr(cp, "images", "ls", "-q").stdout.split():
        say(f"sandbox image {PAUSE_IMAGE}: present")
        return
    import docker

    context = cp.root / "images" / "pause"
    context.mkdir(parents=True, exist_ok=True)
    shutil.copy2(bin_dir / "pause", context / "pause")
    (context / "Dockerfile").write_text(
        'FROM scratch\nCOPY pause /pause\nUSER 65535\nENTRYPOINT ["/pause"]\n'
    )
    client = docker.from_env(timeout=120)
    image, _ = client.images.build(path=str(context), tag=PAUSE_IMAGE, rm=True)
    archive = context / "pause.tar"
    with open(archive, "wb") as out:
        for chunk in image.save(named=True):
            out.write(chunk)
    _ctr(cp, "images", "import", str(archive))
    archive.unlink()
    client.images.remove(image.id, force=True)  # Docker only carried it; containerd keeps it
    say(f"sandbox image {PAUSE_IMAGE}: built FROM scratch and imported into containerd")


# -- the commands -------------------------------------------------------------------------


def _preflight() -> None:
    if os.geteuid() != 0:
        raise StackError("the Kubernetes test bed needs root (network, cgroups, mounts)")
    for tool in ("containerd", "containerd-shim-runc-v2", "runc", "ctr", "ip", "iptables",
                 "conntrack"):
        if shutil.which(tool) is None:
            raise StackError(f"{tool} is not installed; run `make setup` (as root on Debian)")
    for plugin in ("bridge", "host-local", "loopback", "portmap"):
        if not (CNI_BIN / plugin).exists():
            raise StackError(f"CNI plugin {CNI_BIN / plugin} is missing; run `make setup`")
    if not Path("/proc/sys/net/bridge/bridge-nf-call-iptables").exists():
        if shutil.which("modprobe"):
            run("modprobe", "br_netfilter", check=False)
        if not Path("/proc/sys/net/bridge/bridge-nf-call-iptables").exists():
            raise StackError("the kernel has no br_netfilter: kube-proxy cannot see pod traffic")


def _note_kernel_tunables(record: dict) -> None:
    if "sysctls" not in record:
        record["sysctls"] = {k: Path("/proc/sys", k).read_text().strip() for k in KERNEL_TUNABLES}


def _restore_kernel_tunables(record: dict, say: Say) -> None:
    for key, value in record.pop("sysctls", {}).items():
        file = Path("/proc/sys", key)
        with contextlib.suppress(OSError):
            if file.read_text().strip() != value:
                file.write_text(value)
                say(f"sysctl {key.replace('/', '.')}: restored to {value} (kubelet had set it)")


def _ensure_component(c: Component, cp: ClusterPaths, record: dict, say: Say) -> None:
    prints = record.setdefault("fingerprints", {})
    fingerprint = c.fingerprint()
    if alive(record, c.name):
        if prints.get(c.name) == fingerprint:
            say(f"{c.name}: running (pid {record[f'{c.name}_pid']})")
            return
        say(f"{c.name}: configuration changed")
        stop(record, c.name, say)
    elif c.ready():
        raise StackError(f"{c.name}: something this stack did not start already answers "
                         "on its port; stop it first")
    log = cp.logs / f"{c.name}.log"
    if "HOME" in c.env:
        Path(c.env["HOME"]).mkdir(parents=True, exist_ok=True)
    pid = spawn(c.argv, log, record, c.name, env=c.env)
    prints[c.name] = fingerprint
    cp.save_record(record)
    started = time.monotonic()
    wait_for(c.name, lambda: c.ready() or not alive(record, c.name), c.timeout, log)
    if not alive(record, c.name):
        tail = log.read_text(errors="replace")[-2500:] if log.exists() else ""
        raise StackError(f"{c.name} exited at start; the end of {log}:\n{tail}")
    say(f"{c.name}: started in {time.monotonic() - started:.1f}s (pid {pid}, "
        f"log {log})")


def up(say: Say = print, paths: StackPaths | None = None) -> None:
    """Bring the test bed up (idempotent); raises StackError naming what did not start."""
    paths = paths or StackPaths.default()
    cp = ClusterPaths.of(paths)
    _preflight()
    started = time.monotonic()
    bin_dir = binaries(say)
    say(f"kubernetes {version_pinned()}: binaries in {bin_dir}")
    cp.logs.mkdir(parents=True, exist_ok=True)
    cluster_pki.ensure_pki(cp.pki, _identities())
    record = cp.load_record()
    record["bin_dir"] = str(bin_dir)
    record["prometheus"] = str(prometheus_build(say))
    try:
        record["network"] = True  # before making it: a half-done up is undone by down too
        cp.save_record(record)
        ensure_routes(say)
        ensure_firewall(say)
        everything = components(cp, bin_dir)
        for c in everything:
            if c.name == "kubelet":
                _note_kernel_tunables(record)
            _ensure_component(c, cp, record, say)
            if c.name == "containerd":
                ensure_pause_image(cp, bin_dir, say)
        cluster_access.wait_for_node(cp, say)
        cluster_access.ensure(cp, paths, say)
    finally:
        cp.save_record(record)
    say(f"kubernetes: up in {time.monotonic() - started:.1f}s; "
        f"KUBECONFIG={cp.ferryman_kubeconfig} (ServiceAccount ferryman)")


def status(say: Say = print, paths: StackPaths | None = None) -> list[tuple[str, bool, str]]:
    """The test bed's components as (name, ok, detail) rows; none when `up` never ran."""
    paths = paths or StackPaths.default()
    cp = ClusterPaths.of(paths)
    record = cp.load_record()
    if not started_any(record):
        return []
    rows = []
    for name in COMPONENTS:
        pid = record.get(f"{name}_pid")
        short = name.removeprefix("kube-")  # fits the status table's name column
        rows.append((f"k8s {short}", alive(record, name),
                     f"pid {pid}" if pid else "not started"))
    if api_ready(cp):
        rows.append(cluster_access.node_row(cp))
    else:
        rows.append(("k8s apiserver ready", False, API_SERVER))
    return rows


def _leftover_shims(cp: ClusterPaths) -> list[int]:
    """Shims our containerd started (they name its socket in their argv)."""
    pids = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        with contextlib.suppress(OSError):
            argv = (proc / "cmdline").read_bytes().split(b"\0")
            if b"containerd-shim" in argv[0] and str(cp.containerd_socket).encode() in argv:
                pids.append(int(proc.name))
    return pids


def _mounts_under(root: Path) -> list[str]:
    mounts = []
    with contextlib.suppress(OSError):
        for line in Path("/proc/self/mountinfo").read_text().splitlines():
            point = line.split()[4].replace("\\040", " ")
            if point == str(root) or point.startswith(f"{root}/"):
                mounts.append(point)
    return sorted(mounts, key=len, reverse=True)


def _remove_cgroups(say: Say) -> None:
    """kubelet's QoS and pod cgroups (cgroupfs driver), deepest first."""
    removed = 0
    for top in Path("/sys/fs/cgroup").glob("*/kubepods"):
        for directory in sorted((p for p in top.rglob("*") if p.is_dir()),
                                key=lambda p: len(p.parts), reverse=True) + [top]:
            with contextlib.suppress(OSError):
                directory.rmdir()
                removed += 1
    if removed:
        say(f"cgroups: {removed} kubepods cgroups removed")


def down(say: Say = print, paths: StackPaths | None = None, purge: bool = False) -> None:
    """Remove what `up` made; `purge` also deletes certificates, etcd data and images."""
    paths = paths or StackPaths.default()
    cp = ClusterPaths.of(paths)
    record = cp.load_record()
    if started_any(record):
        # Nothing may re-create pods while kubelet tears them down (and releases their
        # addresses through the CNI plugins).
        for name in ("kube-controller-manager", "kube-scheduler"):
            stop(record, name, say)
        if api_ready(cp) and alive(record, "kubelet"):
            cluster_access.delete_all_pods(cp, say)
        stop(record, "kubelet", say)
        remove_kubelet_chains(say)
        stop(record, "kube-proxy", say)
        bin_dir = Path(record.get("bin_dir", "")) if record.get("bin_dir") else None
        proxy = bin_dir / "kube-proxy" if bin_dir else None
        if proxy and proxy.exists():
            run(str(proxy), "--cleanup", "--v", "0", check=False)
            say("kube-proxy: its iptables rules cleaned up (kube-proxy --cleanup)")
        if alive(record, "containerd") and containerd_ready(cp):
            for task in _ctr(cp, "tasks", "ls", "-q", check=False).stdout.split():
                _ctr(cp, "tasks", "kill", "--signal", "SIGKILL", task, check=False)
                time.sleep(0.2)
                _ctr(cp, "tasks", "delete", task, check=False)
        stop(record, "containerd", say)
        for pid in _leftover_shims(cp):  # found by our containerd's socket in their argv
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)
            say(f"containerd shim: killed (pid {pid})")
        # It waits for its open watches (Prometheus holds one) to end; its state is in etcd.
        stop(record, "kube-apiserver", say, grace=5)
        stop(record, "etcd", say)
    for point in _mounts_under(cp.root):
        run("umount", point, check=False)
        if point in _mounts_under(cp.root):
            run("umount", "-l", point, check=False)
    _restore_kernel_tunables(record, say)
    # The machine's interfaces, iptables chains and cgroups are shared by every state
    # folder: only the one whose `up` made them takes them away.
    if record.pop("network", False):
        _remove_cgroups(say)
        remove_interfaces(say)
        remove_firewall(say)
    shutil.rmtree(cp.ipam, ignore_errors=True)
    shutil.rmtree(cp.containerd / "state", ignore_errors=True)
    record.pop("fingerprints", None)
    if cp.root.exists():
        cp.save_record(record)
    if purge and cp.root.exists():
        left = _mounts_under(cp.root)
        if left:
            raise StackError(f"not purging {cp.root}: still mounted under it: {left}")
        shutil.rmtree(cp.root)
        say(f"kubernetes state {cp.root}: removed")
