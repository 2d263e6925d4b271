"""Where the Kubernetes test bed sits on the host's network, and what may cross it.

Addresses (all inside 100.64.0.0/14, which Docker's pools never use): pods 100.64.0.0/16
(this node's 100.64.0.0/24 on the bridge `ferryman-cni0`), services 100.65.0.0/16, and the
node itself 100.66.0.1 on the interface `ferryman-k8s`. The whole /14 is routed to that
interface, a bridge with no ports (this kernel has no dummy interfaces): it has nowhere to
send a packet and drops it, so no packet for these ranges can leave the machine. The pods'
bridge's /24 is the one more specific route. The API server, the kubelet and NodePorts
listen on 100.66.0.1 only: the host reaches it, and so do the stack's containers
(Prometheus) through Docker's gateway bridge; an INPUT rule drops it from any other
interface.
"""

from __future__ import annotations

import shutil
import subprocess

from devstack.processes import Say
from tasks.errors import StackError

NODE_IP = "100.66.0.1"
ALL_RANGES = "100.64.0.0/14"
POD_RANGE = "100.64.0.0/16"
NODE_POD_RANGE = "100.64.0.0/24"
POD_GATEWAY = "100.64.0.1"
SERVICE_RANGE = "100.65.0.0/16"
SERVICE_IP = "100.65.0.1"  # the `kubernetes` Service: the first address of the range
NULL_BRIDGE = "ferryman-k8s"
BRIDGE = "ferryman-cni0"
DOCKER_GATEWAY_BRIDGE = "docker_gwbridge"  # where the stack's containers reach the host from
API_PORT = 6443
API_SERVER = f"https://{NODE_IP}:{API_PORT}"
FORWARD_CHAIN = "FERRYMAN-K8S-FORWARD"
INPUT_CHAIN = "FERRYMAN-K8S-INPUT"
RULE_COMMENT = "ferryman kubernetes test bed"


def run(*args: str, check: bool = True, input: str | None = None) -> subprocess.CompletedProcess:
    out = subprocess.run(list(args), capture_output=True, text=True, input=input)
    if check and out.returncode != 0:
        raise StackError(f"{' '.join(args)} failed:\n{out.stdout}{out.stderr}".strip())
    return out


def _link_exists(name: str) -> bool:
    return run("ip", "link", "show", name, check=False).returncode == 0


def ensure_routes(say: Say) -> None:
    """The port-less bridge holding the node's address, and the test bed's ranges routed to it.

    Not a blackhole route: the host's own connections to a Service address need a route
    through a device, or connect() fails before kube-proxy's DNAT rule ever sees them."""
    if not _link_exists(NULL_BRIDGE):
        run("ip", "link", "add", NULL_BRIDGE, "type", "bridge")
    addresses = run("ip", "-o", "addr", "show", "dev", NULL_BRIDGE).stdout
    if f" {NODE_IP}/32 " not in addresses:
        run("ip", "addr", "add", f"{NODE_IP}/32", "dev", NULL_BRIDGE)
    run("ip", "link", "set", NULL_BRIDGE, "up")
    run("ip", "route", "replace", ALL_RANGES, "dev", NULL_BRIDGE)
    say(f"routes: {ALL_RANGES} on {NULL_BRIDGE} (node {NODE_IP}; pods {POD_RANGE}, "
        f"services {SERVICE_RANGE}), nothing leaves the machine")


def _iptables(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    return run("iptables", "-w", *args, check=check)


def _ensure_rule(chain: str, *rule: str, position: int | None = None) -> None:
    if _iptables("-C", chain, *rule, check=False).returncode != 0:
        if position is None:
            _iptables("-A", chain, *rule)
        else:
            _iptables("-I", chain, str(position), *rule)


def _forward_rules() -> list[list[str]]:
    """What may cross the host between the pods' bridge and anything else."""
    return [
        ["-i", BRIDGE, "-o", BRIDGE, "-j", "ACCEPT"],  # pod to pod (and to itself via a Service)
        # The stack's containers (Prometheus) scrape pods; the pods answer.
        ["-i", DOCKER_GATEWAY_BRIDGE, "-o", BRIDGE, "-j", "ACCEPT"],
        ["-i", BRIDGE, "-o", DOCKER_GATEWAY_BRIDGE, "-m", "conntrack",
         "--ctstate", "RELATED,ESTABLISHED", "-j", "ACCEPT"],
        ["-i", BRIDGE, "-j", "DROP"],  # pods reach nothing else: no packet leaves
        ["-o", BRIDGE, "-j", "DROP"],
    ]


def _input_rules() -> list[list[str]]:
    """The node's address answers loopback, the pods and the stack's containers only."""
    return [
        ["-i", "lo", "-j", "RETURN"],
        ["-i", BRIDGE, "-j", "RETURN"],
        ["-i", DOCKER_GATEWAY_BRIDGE, "-j", "RETURN"],
        ["-j", "DROP"],
    ]


def _jumps() -> list[tuple[str, list[str]]]:
    comment = ["-m", "comment", "--comment", RULE_COMMENT]
    return [
        ("FORWARD", [*comment, "-j", FORWARD_CHAIN]),
        ("INPUT", ["-d", ALL_RANGES, *comment, "-j", INPUT_CHAIN]),
    ]


def ensure_firewall(say: Say) -> None:
    """Docker's FORWARD policy is DROP; the test bed's own chains say what pods may do."""
    for chain, rules in ((FORWARD_CHAIN, _forward_rules()), (INPUT_CHAIN, _input_rules())):
        if _iptables("-S", chain, check=False).returncode != 0:
            _iptables("-N", chain)
        current = _iptables("-S", chain).stdout.splitlines()[1:]
        wanted = [" ".join(["-A", chain, *r]) for r in rules]
        if current != wanted:
            _iptables("-F", chain)
            for rule in rules:
                _iptables("-A", chain, *rule)
    for chain, jump in _jumps():
        _ensure_rule(chain, *jump, position=1)
    say(f"iptables: chains {FORWARD_CHAIN}, {INPUT_CHAIN} (pods <-> pods, "
        f"{DOCKER_GATEWAY_BRIDGE} -> pods; nothing else)")


def remove_firewall(say: Say) -> None:
    removed = False
    for chain, jump in _jumps():
        while _iptables("-D", chain, *jump, check=False).returncode == 0:
            removed = True
    for chain in (FORWARD_CHAIN, INPUT_CHAIN):
        if _iptables("-S", chain, check=False).returncode == 0:
            _iptables("-F", chain)
            _iptables("-X", chain)
            removed = True
    if removed:
        say(f"iptables: {FORWARD_CHAIN}, {INPUT_CHAIN} and their jumps removed")


# kubelet's own chains (both address families): a canary it watches to notice a flush, a
# hint of the iptables mode, and KUBE-FIREWALL, which drops non-loopback packets to 127/8.
KUBELET_CHAINS = (("filter", "KUBE-FIREWALL"), ("filter", "KUBE-KUBELET-CANARY"),
                  ("nat", "KUBE-KUBELET-CANARY"), ("mangle", "KUBE-KUBELET-CANARY"),
                  ("mangle", "KUBE-IPTABLES-HINT"))


def remove_kubelet_chains(say: Say) -> None:
    removed = 0
    for binary in ("iptables", "ip6tables"):
        if shutil.which(binary) is None:
            continue
        for chain in ("INPUT", "OUTPUT"):
            while run(binary, "-w", "-D", chain, "-j", "KUBE-FIREWALL",
                       check=False).returncode == 0:
                pass
        for table, chain in KUBELET_CHAINS:
            if run(binary, "-w", "-t", table, "-F", chain, check=False).returncode == 0:
                run(binary, "-w", "-t", table, "-X", chain, check=False)
                removed += 1
    if removed:
        say(f"iptables: kubelet's chains removed ({removed}: KUBE-FIREWALL, "
            "KUBE-KUBELET-CANARY, KUBE-IPTABLES-HINT)")


def remove_interfaces(say: Say) -> None:
    for link in (BRIDGE, NULL_BRIDGE):
        if _link_exists(link):
            run("ip", "link", "delete", link)
            say(f"interface {link}: removed (with its routes)")
