"""ECR's API side (repository, token, describe_images) against moto in server mode.

No AWS endpoint is ever called: every client gets moto's 127.0.0.1 URL, fake credentials,
and no metadata lookups (`ecr_api` fixture). The image layers' side is in test_push.py.
"""

from __future__ import annotations

import hashlib
import json

import boto3
import pytest
from botocore.exceptions import ClientError

from tasks.errors import (
    RegistryAuthError,
    RegistryError,
    RegistryUnavailableError,
    RepositoryNotFoundError,
    SpecError,
)
from tasks.registries.ecr import EcrRegistry
from tasks.registries.specs import EcrRegistrySpec
from tests.registries.servers import free_port

ACCOUNT = "123456789012"  # moto's default account
MANIFEST = json.dumps({
    "schemaVersion": 2,
    "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
    "config": {"mediaType": "application/vnd.docker.container.image.v1+json", "size": 2,
               "digest": "sha256:" + "c" * 64},
    "layers": [],
})
DIGEST = "sha256:" + hashlib.sha256(MANIFEST.encode()).hexdigest()


def ecr_spec(endpoint_url: str, **options) -> EcrRegistrySpec:
    return EcrRegistrySpec(kind="ecr", region="us-east-1", endpoint_url=endpoint_url, **options)


def boto(endpoint_url: str):
    return boto3.client("ecr", region_name="us-east-1", endpoint_url=endpoint_url)


def test_login_gives_the_token_credentials_and_the_proxy_endpoint_host(ecr_api):
    auth = EcrRegistry(ecr_spec(ecr_api)).login()
    assert auth.registry == f"{ACCOUNT}.dkr.ecr.us-east-1.amazonaws.com"
    assert auth.username == "AWS"
    assert auth.password.get_secret_value() == f"{ACCOUNT}-auth-token"
    assert "auth-token" not in repr(auth)


def test_registry_host_override_replaces_the_proxy_endpoint(ecr_api):
    registry = EcrRegistry(ecr_spec(ecr_api, registry_host="127.0.0.1:5999"))
    where = registry.destination("team/app", registry.login())
    assert where.repository == "127.0.0.1:5999/team/app"
    assert where.api_url == "http://127.0.0.1:5999"
    assert where.auth.username == "AWS"


def test_creates_an_absent_repository_with_immutability_and_scan_on_push(ecr_api):
    registry = EcrRegistry(ecr_spec(ecr_api, tag_immutability=True, scan_on_push=True))
    registry.prepare(registry.destination("team/app", None))
    [repo] = boto(ecr_api).describe_repositories(repositoryNames=["team/app"])["repositories"]
    assert repo["imageTagMutability"] == "IMMUTABLE"
    assert repo["imageScanningConfiguration"] == {"scanOnPush": True}


def test_leaves_an_existing_repository_as_it_is(ecr_api):
    boto(ecr_api).create_repository(repositoryName="team/app", imageTagMutability="MUTABLE")
    registry = EcrRegistry(ecr_spec(ecr_api, tag_immutability=True))
    registry.prepare(registry.destination("team/app", None))
    [repo] = boto(ecr_api).describe_repositories(repositoryNames=["team/app"])["repositories"]
    assert repo["imageTagMutability"] == "MUTABLE"


def test_absent_repository_is_an_error_when_creation_is_off(ecr_api):
    registry = EcrRegistry(ecr_spec(ecr_api, create_repository=False))
    where = registry.destination("team/app", None)
    with pytest.raises(RepositoryNotFoundError) as e:
        registry.prepare(where)
    assert "no repository 'team/app'" in str(e.value) and where.repository in str(e.value)
    assert "create_repository is false" in str(e.value)


def test_reads_the_pushed_digest_back_with_describe_images(ecr_api):
    client = boto(ecr_api)
    client.create_repository(repositoryName="team/app")
    client.put_image(repositoryName="team/app", imageManifest=MANIFEST, imageTag="1.0.0",
                     imageDigest=DIGEST)
    registry = EcrRegistry(ecr_spec(ecr_api))
    where = registry.destination("team/app", None)
    registry.confirm(where, "1.0.0", DIGEST)
    with pytest.raises(RegistryError, match=f"lists {DIGEST} as .*team/app:1.0.0, not the pushed"):
        registry.confirm(where, "1.0.0", "sha256:" + "d" * 64)


def test_read_back_waits_for_a_late_tag_then_fails_clearly(ecr_api):
    boto(ecr_api).create_repository(repositoryName="team/app")
    now = [0.0]
    registry = EcrRegistry(
        ecr_spec(ecr_api), readback_seconds=2,
        sleep=lambda s: now.__setitem__(0, now[0] + s), clock=lambda: now[0],
    )
    with pytest.raises(RegistryError, match="ImageNotFoundException"):
        registry.confirm(registry.destination("team/app", None), "9.9.9", DIGEST)
    assert now[0] >= 2  # asked again until the read-back time was up


def test_credentials_and_client_settings_from_an_aws_credentials_block(ecr_api, monkeypatch):
    from prefect_aws import AwsCredentials

    block = AwsCredentials(
        aws_access_key_id="from-the-block", aws_secret_access_key="block-secret",
        region_name="eu-west-1", aws_client_parameters={"endpoint_url": ecr_api},
    )
    loaded: list[str] = []
    monkeypatch.setattr(AwsCredentials, "load", classmethod(
        lambda cls, name, **kw: loaded.append(name) or block))
    monkeypatch.delenv("AWS_DEFAULT_REGION")
    registry = EcrRegistry(EcrRegistrySpec(kind="ecr", aws_credentials_block="team-aws"))
    auth = registry.login()
    assert loaded == ["team-aws"]
    assert auth.registry == f"{ACCOUNT}.dkr.ecr.eu-west-1.amazonaws.com"  # the block's region
    credentials = registry.client()._request_signer._credentials
    assert credentials.access_key == "from-the-block"


def test_a_missing_block_is_a_spec_error(ecr_api, monkeypatch):
    from prefect_aws import AwsCredentials

    def missing(cls, name, **kw):
        raise ValueError(f"Unable to find block document named {name}")

    monkeypatch.setattr(AwsCredentials, "load", classmethod(missing))
    registry = EcrRegistry(EcrRegistrySpec(kind="ecr", aws_credentials_block="nope"))
    with pytest.raises(SpecError, match="registry.aws_credentials_block: no AwsCredentials "
                                        "block named 'nope'"):
        registry.login()


def test_no_region_anywhere_is_a_spec_error(ecr_api, monkeypatch):
    monkeypatch.delenv("AWS_DEFAULT_REGION")
    with pytest.raises(SpecError, match="registry.region: no AWS region"):
        EcrRegistry(EcrRegistrySpec(kind="ecr", endpoint_url=ecr_api)).login()


def test_refused_aws_credentials_fail_as_auth_errors(moto_with_auth, ecr_api, monkeypatch):
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIAUNKNOWNKEY000000")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "wrong-secret-key-value")
    registry = EcrRegistry(ecr_spec(moto_with_auth.url))
    with pytest.raises(RegistryAuthError) as e:
        registry.login()
    text = str(e.value)
    assert "could not get an authorization token" in text and "InvalidClientTokenId" in text
    assert moto_with_auth.url in text and "wrong-secret-key-value" not in text


def test_unreachable_ecr_api_is_transient(ecr_api):
    closed = f"http://127.0.0.1:{free_port()}"
    with pytest.raises(RegistryUnavailableError, match="is unreachable; could not get an"):
        EcrRegistry(ecr_spec(closed)).login()


@pytest.mark.parametrize(
    "code, status, error",
    [
        ("ThrottlingException", 400, RegistryUnavailableError),
        ("ServerException", 500, RegistryUnavailableError),
        ("AccessDeniedException", 400, RegistryAuthError),
        ("ExpiredTokenException", 400, RegistryAuthError),
        ("RepositoryNotFoundException", 400, RepositoryNotFoundError),
        ("LimitExceededException", 400, RegistryError),
    ],
)
def test_aws_errors_become_one_error_each(ecr_api, code, status, error):
    def fails(client):
        raise ClientError({"Error": {"Code": code, "Message": "no"},
                           "ResponseMetadata": {"HTTPStatusCode": status}}, "CreateRepository")

    with pytest.raises(error) as e:
        EcrRegistry(ecr_spec(ecr_api))._call("create the repository", fails, "x/team/app:1")
    assert f"could not create the repository for x/team/app:1: {code}: no" in str(e.value)
    assert type(e.value) is error
