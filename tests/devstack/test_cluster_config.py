"""The test bed's Prometheus job, checked without a cluster: Prometheus' own promtool (of the
release the test bed builds; Debian's has no Kubernetes discovery) reads the stack's
configuration with it, and the job is left out while the test bed is down."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
import yaml

from devstack import cluster, cluster_access
from devstack.settings import StackPaths
from devstack.stack import app_specs, prometheus_config

# It needs the test bed's Prometheus build: it runs with the Kubernetes tests (make test's
# last phase, once the binaries are built).
pytestmark = pytest.mark.kubernetes


def _promtool() -> Path:
    """The test bed's promtool; building it is `stack up --kubernetes`'s work, not a test's."""
    where = subprocess.run(["sh", str(cluster.PROMETHEUS_BUILD_SCRIPT), "--where"],
                           capture_output=True, text=True, check=True).stdout.strip()
    promtool = Path(where) / "promtool"
    if not promtool.exists():
        pytest.fail(f"{promtool} is not built (`ferryman stack up --kubernetes` builds it; "
                    "make test runs this after the build)")
    return promtool


def test_prometheus_accepts_the_stack_config_with_the_pod_job(tmp_path: Path):
    promtool = _promtool()
    (tmp_path / "ca.crt").write_text("")
    (tmp_path / "token").write_text("secret")
    config = tmp_path / "prometheus.yml"
    config.write_text(prometheus_config(app_specs(), [cluster_access.scrape_job(str(tmp_path))]))
    checked = subprocess.run([str(promtool), "check", "config", str(config)],
                             capture_output=True, text=True)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    jobs = {j["job_name"]: j for j in yaml.safe_load(config.read_text())["scrape_configs"]}
    pods = jobs["kubernetes-pods"]
    assert pods["honor_labels"] is True
    assert pods["relabel_configs"][0] == {
        "source_labels": ["__meta_kubernetes_pod_annotation_prometheus_io_scrape"],
        "regex": "true", "action": "keep",
    }


def test_no_pod_job_and_no_token_left_while_the_test_bed_is_down(tmp_path: Path):
    files = tmp_path / "prometheus" / "kubernetes"
    files.mkdir(parents=True)
    (files / "token").write_text("stale")
    assert cluster_access.prometheus_jobs(StackPaths(tmp_path), tmp_path / "prometheus") == []
    assert not (files / "token").exists()
