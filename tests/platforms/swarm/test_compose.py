"""Reading a Swarm service from a compose v3 stack file, strictly."""

from pathlib import Path

import pytest

from tasks.errors import SpecError
from tasks.platforms.swarm.compose import load_service

DEMO_STACK = Path(__file__).resolve().parents[3] / "deployments" / "demo" / "stack.yml"


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "stack.yml"
    path.write_text(text)
    return path


def test_reads_the_demo_service():
    definition = load_service(DEMO_STACK, "demo")
    service = definition.service
    assert definition.networks == ("ferryman",)
    assert service.deploy.endpoint_mode == "dnsrr"
    assert service.deploy.update_config.failure_action == "pause"
    assert service.deploy.update_config.monitor == 5.0
    assert service.environment == {"APP": "demo"}


def test_environment_as_list_and_numbers_as_strings(tmp_path):
    path = write(tmp_path, "services:\n  a:\n    environment: [X=1, Y=two]\n"
                           "    labels: {n: 3}\n")
    service = load_service(path, "a").service
    assert service.environment == {"X": "1", "Y": "two"} and service.labels == {"n": "3"}


def test_unknown_service_lists_the_known_ones():
    with pytest.raises(SpecError, match=r"no service 'web' \(services: \['demo'\]\)"):
        load_service(DEMO_STACK, "web")


def test_unsupported_key_is_named_with_its_path(tmp_path):
    path = write(tmp_path, "services:\n  a:\n    privileged: true\n")
    with pytest.raises(SpecError, match=r"services\.a\.privileged: Extra inputs are not permitted"):
        load_service(path, "a")


PRODUCTION = """
services:
  web:
    command: ["-port", "8080"]
    entrypoint: /web
    healthcheck:
      test: ["CMD", "/web", "-check"]
      interval: 2s
      timeout: 1s
      retries: 3
      start_period: 5s
    secrets: [db_password, {source: tls, target: /run/tls.pem, mode: 0400}]
    configs: [web_config]
    volumes: ["cache:/cache", "/srv/static:/static:ro", {type: tmpfs, target: /tmp}]
    ports: [{target: 9100, published: 9100, mode: host}]
    user: "65534"
    deploy:
      replicas: 3
      resources:
        limits: {cpus: "0.5", memory: 128M}
        reservations: {memory: 64m}
secrets:
  db_password: {external: true, name: prod_db_password}
  tls: {external: true}
configs:
  web_config: {external: true}
volumes:
  cache: {}
"""


def test_reads_the_keys_production_services_use(tmp_path):
    d = load_service(write(tmp_path, PRODUCTION), "web")
    s = d.service
    assert s.healthcheck.test == ["CMD", "/web", "-check"] and s.healthcheck.start_period == 5
    assert [(name, r.target, r.mode) for name, r in d.secrets] == [
        ("prod_db_password", None, 0o444), ("tls", "/run/tls.pem", 0o400)]
    assert [name for name, _ in d.configs] == ["web_config"]
    assert [(src, m.type, m.target, m.read_only) for src, m in d.volumes] == [
        ("cache", "volume", "/cache", False), ("/srv/static", "bind", "/static", True),
        (None, "tmpfs", "/tmp", False)]
    assert s.ports[0].mode == "host" and s.ports[0].published == 9100
    assert s.deploy.resources.limits.cpus == 0.5
    assert s.deploy.resources.limits.memory == 128 * 1024**2
    assert s.deploy.resources.reservations.memory == 64 * 1024**2


def test_a_healthcheck_string_runs_through_the_shell(tmp_path):
    path = write(tmp_path, "services:\n  a:\n    healthcheck: {test: 'wget -q localhost'}\n")
    assert load_service(path, "a").service.healthcheck.test == ["CMD-SHELL", "wget -q localhost"]


def test_routing_mesh_ports_are_refused_with_dnsrr(tmp_path):
    path = write(tmp_path, "services:\n  a:\n    ports: ['80:8080']\n")
    with pytest.raises(SpecError, match=r"services\.a\.ports\[0\]: endpoint_mode dnsrr "
                                        r"publishes only with `mode: host`"):
        load_service(path, "a")


@pytest.mark.parametrize(("kind", "entry"), [("secrets", "s"), ("configs", "c")])
def test_secrets_and_configs_must_be_declared_and_external(tmp_path, kind, entry):
    path = write(tmp_path, f"services:\n  a:\n    {kind}: [{entry}]\n")
    with pytest.raises(SpecError, match=f"services.a.{kind}: '{entry}' is not declared"):
        load_service(path, "a")
    path = write(tmp_path, f"services:\n  a:\n    {kind}: [{entry}]\n{kind}:\n  {entry}: {{}}\n")
    with pytest.raises(SpecError, match=f"{kind}.{entry}: must be `external: true`"):
        load_service(path, "a")


def test_named_volume_must_be_declared(tmp_path):
    path = write(tmp_path, "services:\n  a:\n    volumes: ['data:/data']\n")
    with pytest.raises(SpecError, match=r"volumes\[0\]: volume 'data' is not declared"):
        load_service(path, "a")


@pytest.mark.parametrize("size", ["lots", "12Q", "-5M"])
def test_bad_memory_size_is_named(tmp_path, size):
    path = write(tmp_path, "services:\n  a:\n    deploy:\n      resources:\n"
                           f"        limits: {{memory: '{size}'}}\n")
    with pytest.raises(SpecError, match=r"deploy\.resources\.limits\.memory: .*not a size"):
        load_service(path, "a")


def test_bad_update_config_value_is_named(tmp_path):
    path = write(tmp_path, "services:\n  a:\n    deploy:\n      update_config:\n"
                           "        failure_action: explode\n")
    with pytest.raises(SpecError, match=r"services\.a\.deploy\.update_config\.failure_action"):
        load_service(path, "a")


def test_network_must_be_declared_and_external(tmp_path):
    path = write(tmp_path, "services:\n  a:\n    networks: [n]\n")
    with pytest.raises(SpecError, match="'n' is not declared under `networks:`"):
        load_service(path, "a")
    path = write(tmp_path, "services:\n  a:\n    networks: [n]\nnetworks:\n  n: {}\n")
    with pytest.raises(SpecError, match="must be `external: true`"):
        load_service(path, "a")
