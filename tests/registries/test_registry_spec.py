"""The spec's `registry` section: one model per kind, each problem named by its field path."""

from pathlib import Path

import pytest
import yaml

from tasks.errors import SpecError
from tasks.registries import get_registry
from tasks.registries.dockerhub import DockerHubRegistry
from tasks.registries.ecr import EcrRegistry
from tasks.registries.generic import GenericRegistry
from tasks.registries.specs import DockerHubRegistrySpec, EcrRegistrySpec, GenericRegistrySpec
from tasks.spec import parse_spec

ROOT = Path(__file__).resolve().parents[2]
DEMO = ROOT / "deployments" / "demo" / "release.yaml"


def spec_with(registry: dict, repository: str = "ferryman/demo"):
    data = yaml.safe_load(DEMO.read_text())
    data["registry"] = registry
    data["image"]["repository"] = repository
    return parse_spec(data, DEMO.parent, "test.yaml")


def error_of(registry: dict, repository: str = "ferryman/demo") -> str:
    with pytest.raises(SpecError) as e:
        spec_with(registry, repository)
    return str(e.value)


def test_a_registry_without_kind_is_generic():
    registry = spec_with({"url": "127.0.0.1:5000"}).registry
    assert isinstance(registry, GenericRegistrySpec) and registry.kind == "generic"
    assert registry.extra_tags == [] and registry.allow_tag_overwrite is False


def test_each_kind_reads_its_own_options():
    hub = spec_with({"kind": "dockerhub", "namespace": "acme", "credentials_block": "hub",
                     "extra_tags": ["latest"], "allow_tag_overwrite": ["latest"]}, "demo")
    assert isinstance(hub.registry, DockerHubRegistrySpec)
    assert hub.registry.may_overwrite("latest") and not hub.registry.may_overwrite("1.0.0")
    ecr = spec_with({"kind": "ecr", "region": "eu-central-1", "tag_immutability": True,
                     "scan_on_push": True, "aws_credentials_block": "aws"})
    assert isinstance(ecr.registry, EcrRegistrySpec)
    assert ecr.registry.tag_immutability and ecr.registry.scan_on_push
    assert ecr.registry.endpoint_url is None and ecr.registry.registry_host is None


@pytest.mark.parametrize(
    "registry, message",
    [
        ({"url": "http://x"}, "registry.url: String should match pattern"),
        ({"kind": "quay", "url": "x"},
         "registry.kind: 'quay' is not one of 'generic', 'dockerhub', 'ecr'"),
        ({"kind": "ecr", "region": "moon"}, "registry.region: String should match pattern"),
        ({"kind": "ecr", "registry_id": "12"}, "registry.registry_id: String should match"),
        ({"kind": "ecr", "endpoint_url": "127.0.0.1:1"}, "registry.endpoint_url: String should"),
        ({"kind": "ecr", "url": "x"}, "registry.url: Extra inputs are not permitted"),
        ({"kind": "dockerhub"}, "registry.namespace: Field required"),
        ({"kind": "generic", "url": "a:1", "extra_tags": ["ok", "not ok"]},
         "registry.extra_tags[1]: String should match pattern"),
        ({"kind": "generic", "url": "a:1", "allow_tag_overwrite": "sometimes"},
         "registry.allow_tag_overwrite"),
    ],
)
def test_invalid_registry_names_the_field(registry, message):
    assert message in error_of(registry, "demo")


def test_docker_hub_wants_the_name_alone():
    text = error_of({"kind": "dockerhub", "namespace": "acme"}, "ferryman/demo")
    assert "registry: Docker Hub repositories are <namespace>/<name>" in text
    assert "'ferryman/demo'" in text


@pytest.mark.parametrize(
    "registry, repository, kind",
    [
        ({"url": "127.0.0.1:5000"}, "ferryman/demo", GenericRegistry),
        ({"kind": "dockerhub", "namespace": "acme"}, "demo", DockerHubRegistry),
        ({"kind": "ecr", "region": "us-east-1"}, "ferryman/demo", EcrRegistry),
    ],
)
def test_factory_makes_one_registry_per_kind(registry, repository, kind):
    assert isinstance(get_registry(spec_with(registry, repository).registry), kind)


def test_factory_refuses_an_unknown_kind():
    class Odd:
        kind = "quay"

    with pytest.raises(SpecError, match="registry.kind: no registry of kind 'quay'"):
        get_registry(Odd())


def test_docker_hub_defaults_to_docker_hub_itself():
    hub = get_registry(spec_with({"kind": "dockerhub", "namespace": "acme"}, "demo").registry)
    where = hub.destination("demo", None)
    assert where.repository == "docker.io/acme/demo"
    assert where.api_url == "https://registry-1.docker.io"
    local = get_registry(spec_with(
        {"kind": "dockerhub", "namespace": "acme", "endpoint": "127.0.0.1:5001"}, "demo"
    ).registry)
    assert local.destination("demo", None).api_url == "http://127.0.0.1:5001"


def test_generic_registry_speaks_https_unless_on_this_machine():
    for url, api in [("registry.example.com", "https://registry.example.com"),
                     ("127.0.0.1:5000", "http://127.0.0.1:5000"),
                     ("localhost:5000", "http://localhost:5000")]:
        assert get_registry(spec_with({"url": url}).registry).destination(
            "ferryman/demo", None).api_url == api
