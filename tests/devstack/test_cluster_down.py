"""`down` of a state folder whose `up` never brought the test bed up touches nothing of the
machine's: the interfaces, iptables chains and cgroups are shared by every state folder."""

from __future__ import annotations

from devstack import cluster
from devstack.settings import ClusterPaths, StackPaths


def test_down_of_a_state_folder_that_made_nothing_leaves_the_machine_alone(
    tmp_path, monkeypatch
):
    def must_not_run(*args, **kwargs):
        raise AssertionError("down removed what another state folder's up made")

    for name in ("remove_interfaces", "remove_firewall", "_remove_cgroups"):
        monkeypatch.setattr(cluster, name, must_not_run)
    said: list[str] = []

    cluster.down(said.append, StackPaths(tmp_path))

    assert said == []


def test_down_of_the_state_folder_that_made_the_network_removes_it(tmp_path, monkeypatch):
    removed: list[str] = []
    for name in ("remove_interfaces", "remove_firewall", "_remove_cgroups"):
        monkeypatch.setattr(cluster, name, lambda say, n=name: removed.append(n))
    paths = StackPaths(tmp_path)
    cp = ClusterPaths.of(paths)
    cp.root.mkdir(parents=True)
    cp.save_record({"network": True})

    cluster.down(lambda line: None, paths)

    assert sorted(removed) == ["_remove_cgroups", "remove_firewall", "remove_interfaces"]
    assert "network" not in cp.load_record()

