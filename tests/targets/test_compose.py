"""Reading a Swarm service from a compose v3 stack file, strictly."""

from pathlib import Path

import pytest

from tasks.errors import SpecError
from tasks.targets.compose import load_service

DEMO_STACK = Path(__file__).resolve().parents[2] / "deployments" / "demo" / "stack.yml"


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "stack.yml"
    path.write_text(text)
    return path


def test_reads_the_demo_service():
    service, networks = load_service(DEMO_STACK, "demo")
    assert networks == ["ferryman"]
    assert service.deploy.endpoint_mode == "dnsrr"
    assert service.deploy.update_config.failure_action == "pause"
    assert service.deploy.update_config.monitor == 5.0
    assert service.environment == {"APP": "demo"}


def test_environment_as_list_and_numbers_as_strings(tmp_path):
    path = write(tmp_path, "services:\n  a:\n    environment: [X=1, Y=two]\n"
                           "    labels: {n: 3}\n")
    service, _ = load_service(path, "a")
    assert service.environment == {"X": "1", "Y": "two"} and service.labels == {"n": "3"}


def test_unknown_service_lists_the_known_ones():
    with pytest.raises(SpecError, match=r"no service 'web' \(services: \['demo'\]\)"):
        load_service(DEMO_STACK, "web")


def test_unsupported_key_is_named_with_its_path(tmp_path):
    path = write(tmp_path, "services:\n  a:\n    ports: ['80:80']\n")
    with pytest.raises(SpecError, match=r"services\.a\.ports: Extra inputs are not permitted"):
        load_service(path, "a")


def test_bad_update_config_value_is_named(tmp_path):
    path = write(tmp_path, "services:\n  a:\n    deploy:\n      update_config:\n"
                           "        failure_action: explode\n")
    with pytest.raises(SpecError, match=r"services\.a\.deploy\.update_config\.failure_action"):
        load_service(path, "a")


def test_network_must_be_declared_and_external(tmp_path):
    path = write(tmp_path, "services:\n  a:\n    networks: [n]\n")
    with pytest.raises(SpecError, match="'n' is not declared"):
        load_service(path, "a")
    path = write(tmp_path, "services:\n  a:\n    networks: [n]\nnetworks:\n  n: {}\n")
    with pytest.raises(SpecError, match="must be `external: true`"):
        load_service(path, "a")
