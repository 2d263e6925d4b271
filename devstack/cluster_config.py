"""The configuration files of the test bed's containerd, CNI, kubelet and kube-proxy.

Pure text from paths and addresses: devstack.cluster writes them under
`.state/kubernetes/` and restarts a component when its file changes.
"""

from __future__ import annotations

import json
from pathlib import Path

import yaml

from devstack.cluster_network import (
    BRIDGE,
    NODE_IP,
    NODE_POD_RANGE,
    POD_GATEWAY,
    POD_RANGE,
)
from devstack.settings import REGISTRY, ClusterPaths

NODE = "ferryman-node"
PAUSE_IMAGE = "127.0.0.1:5000/ferryman/pause:1"  # imported into containerd, never pulled
CNI_BIN = Path("/usr/lib/cni")


def containerd_config(cp: ClusterPaths) -> str:
    cri = 'plugins."io.containerd.grpc.v1.cri"'
    state = cp.containerd / "state"
    return f"""\
# A containerd of the test bed's own beside Docker's: its own socket, root and state.
version = 2
root = "{cp.containerd / 'root'}"
state = "{state}"
disabled_plugins = ["io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.btrfs",
                    "io.containerd.snapshotter.v1.devmapper", "io.containerd.snapshotter.v1.zfs"]

[grpc]
  address = "{cp.containerd_socket}"

[ttrpc]
  address = "{cp.containerd_socket}.ttrpc"

[metrics]
  address = ""

[plugins."io.containerd.internal.v1.opt"]
  path = "{cp.containerd / 'opt'}"

[{cri}]
  sandbox_image = "{PAUSE_IMAGE}"
  # The sandbox may not lower OOM scores: clamp what a container asks for to ours.
  restrict_oom_score_adj = true
  netns_mounts_under_state_dir = true
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"

[{cri}.containerd]
  snapshotter = "overlayfs"
  default_runtime_name = "runc"

[{cri}.containerd.runtimes.runc]
  runtime_type = "io.containerd.runc.v2"

[{cri}.containerd.runtimes.runc.options]
  SystemdCgroup = false
  Root = "{state / 'runc'}"

[{cri}.cni]
  bin_dir = "{CNI_BIN}"
  conf_dir = "{cp.cni_conf}"
  max_conf_num = 1

[{cri}.registry]
  config_path = "{cp.containerd / 'certs.d'}"
"""


def registry_hosts() -> str:
    """The stack's registry speaks plain HTTP on loopback; pods' pulls go there, nowhere else."""
    return (f'server = "http://{REGISTRY}"\n\n[host."http://{REGISTRY}"]\n'
            '  capabilities = ["pull", "resolve"]\n')


def cni_config(cp: ClusterPaths) -> str:
    return json.dumps({
        "cniVersion": "0.4.0",
        "name": "ferryman",
        "plugins": [
            {
                "type": "bridge", "bridge": BRIDGE, "isGateway": True, "hairpinMode": True,
                # Pods talk to each other, the node and the stack's containers only; nothing
                # of theirs is masqueraded out of the machine.
                "ipMasq": False,
                "ipam": {
                    "type": "host-local",
                    "ranges": [[{"subnet": NODE_POD_RANGE, "gateway": POD_GATEWAY}]],
                    "dataDir": str(cp.ipam),
                },
            },
            {"type": "portmap", "capabilities": {"portMappings": True}},
        ],
    }, indent=2)


def kubelet_config(cp: ClusterPaths) -> str:
    return yaml.safe_dump({
        "apiVersion": "kubelet.config.k8s.io/v1beta1",
        "kind": "KubeletConfiguration",
        "address": NODE_IP,
        "readOnlyPort": 0,
        "healthzBindAddress": "127.0.0.1",
        "healthzPort": 10248,
        "tlsCertFile": str(cp.pki / "kubelet-serving.crt"),
        "tlsPrivateKeyFile": str(cp.pki / "kubelet-serving.key"),
        "authentication": {
            "anonymous": {"enabled": False},
            "webhook": {"enabled": True},
            "x509": {"clientCAFile": str(cp.pki / "ca.crt")},
        },
        "authorization": {"mode": "Webhook"},
        "containerRuntimeEndpoint": f"unix://{cp.containerd_socket}",
        "cgroupDriver": "cgroupfs",  # as containerd's runc (SystemdCgroup = false)
        # These machines mount cgroup v1, which kubelet refuses from 1.35 on unless told.
        "failCgroupV1": False,
        # The sandbox may not lower OOM scores (the default is -999).
        "oomScoreAdj": 0,
        "failSwapOn": False,
        "clusterDomain": "cluster.local",
        "resolvConf": "/etc/resolv.conf",
        "maxPods": 50,
        "serializeImagePulls": False,
        # A test bed on a shared disk: evict nothing for disk space others use.
        "evictionHard": {"memory.available": "100Mi", "nodefs.available": "2%",
                         "imagefs.available": "2%", "nodefs.inodesFree": "2%"},
        "imageGCHighThresholdPercent": 95,
        "imageGCLowThresholdPercent": 90,
    }, sort_keys=False)


def kube_proxy_config(cp: ClusterPaths, kubeconfig: Path) -> str:
    return yaml.safe_dump({
        "apiVersion": "kubeproxy.config.k8s.io/v1alpha1",
        "kind": "KubeProxyConfiguration",
        "mode": "iptables",  # no IPVS in this kernel
        "clientConnection": {"kubeconfig": str(kubeconfig)},
        "hostnameOverride": NODE,
        "clusterCIDR": POD_RANGE,
        "bindAddress": NODE_IP,
        "healthzBindAddress": "127.0.0.1:10256",
        "metricsBindAddress": "127.0.0.1:10249",
        "nodePortAddresses": [f"{NODE_IP}/32"],
        "oomScoreAdj": 0,
        # Leave the machine's conntrack sysctls and route_localnet as they are.
        "conntrack": {"maxPerCore": 0, "min": 0, "tcpEstablishedTimeout": "0s",
                      "tcpCloseWaitTimeout": "0s"},
        "iptables": {"localhostNodePorts": False},
    }, sort_keys=False)
