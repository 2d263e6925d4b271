"""Amazon ECR through boto3: create the repository when absent, log in with
`get_authorization_token`, read the pushed digest back with `describe_images`.

Credentials come from a prefect-aws AwsCredentials block (`registry.aws_credentials_block`)
or boto3's standard chain. The registry host is the token's proxyEndpoint unless
`registry.registry_host` overrides it; `registry.endpoint_url` points the API elsewhere (the
tests use moto in server mode; ECR-compatible services).
"""

from __future__ import annotations

import base64
import re
import time
from collections.abc import Callable
from urllib.parse import urlparse

import boto3
import botocore.exceptions
from botocore.config import Config
from pydantic import SecretStr

from tasks.errors import (
    FerrymanError,
    RegistryAuthError,
    RegistryError,
    RegistryUnavailableError,
    RepositoryNotFoundError,
    SpecError,
)
from tasks.registries.base import Destination, RegistryAuth, api_url_for
from tasks.registries.specs import EcrRegistrySpec

_AUTH_CODES = {
    "AccessDenied", "AccessDeniedException", "UnrecognizedClientException",
    "InvalidSignatureException", "InvalidClientTokenId", "ExpiredToken",
    "ExpiredTokenException", "SignatureDoesNotMatch", "MissingAuthenticationToken",
    "UnauthorizedOperation",
}
_TRANSIENT_CODES = {
    "ThrottlingException", "Throttling", "ThrottledException", "RequestLimitExceeded",
    "TooManyRequestsException", "ServerException", "ServiceUnavailable",
    "ServiceUnavailableException", "InternalFailure", "RequestTimeout",
}
_CLIENT_CONFIG = Config(
    retries={"mode": "standard", "max_attempts": 3}, connect_timeout=5, read_timeout=30
)
READBACK_SECONDS = 15.0
"""How long `confirm` waits for describe_images to list a pushed tag."""


def _message(error: dict) -> str:
    """The error's message; an XML error document (some endpoints send one) is unwrapped."""
    message = str(error.get("Message", ""))
    if message.lstrip().startswith("<"):
        found = re.search(r"<Code>([^<]*)</Code>.*?<Message>([^<]*)</Message>", message, re.S)
        return f"{found[1]}: {found[2]}" if found else "(an XML error document)"
    return message


def _name(region: str, endpoint_url: str | None) -> str:
    return f"ECR ({region}{', API ' + endpoint_url if endpoint_url else ''})"


class EcrRegistry:
    """One ECR registry (an account in a region)."""

    def __init__(
        self,
        spec: EcrRegistrySpec,
        session: boto3.session.Session | None = None,
        readback_seconds: float = READBACK_SECONDS,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.spec = spec
        self._session = session
        self._client = None
        self.readback_seconds = readback_seconds
        self.sleep = sleep
        self.clock = clock
        self.name = _name(spec.region or "the default region", spec.endpoint_url)

    # -- boto3 -------------------------------------------------------------------------------

    def client(self):
        """The boto3 ECR client, made once: the block's session or boto3's standard chain."""
        if self._client is not None:
            return self._client
        params: dict = {}
        session = self._session
        if session is None and self.spec.aws_credentials_block:
            from prefect_aws import AwsCredentials

            try:
                block = AwsCredentials.load(self.spec.aws_credentials_block)
            except ValueError as e:
                raise SpecError(
                    f"registry.aws_credentials_block: no AwsCredentials block named "
                    f"{self.spec.aws_credentials_block!r} on the Prefect server "
                    f"({e.__class__.__name__})"
                ) from None
            session = block.get_boto3_session()
            params = block.aws_client_parameters.get_params_override()
        session = session or boto3.session.Session()
        region = self.spec.region or session.region_name
        if not region:
            raise SpecError(
                "registry.region: no AWS region: give registry.region, the block's region_name, "
                "or set AWS_DEFAULT_REGION"
            )
        config = params.pop("config", None)
        params.update(
            region_name=region,
            config=config.merge(_CLIENT_CONFIG) if config else _CLIENT_CONFIG,
        )
        if self.spec.endpoint_url:
            params["endpoint_url"] = self.spec.endpoint_url
        self._client = session.client("ecr", **params)
        self.name = _name(region, params.get("endpoint_url"))
        return self._client

    def _ids(self) -> dict[str, str]:
        return {"registryId": self.spec.registry_id} if self.spec.registry_id else {}

    def _call(self, doing: str, call: Callable, image: str | None = None):
        """Run one boto3 call; its failure becomes one error naming the registry and image."""
        about = f" for {image}" if image else ""
        try:
            return call(self.client())
        except FerrymanError:
            raise
        except botocore.exceptions.ClientError as e:
            error = e.response.get("Error", {})
            code = error.get("Code", "")
            status = e.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
            text = f"{self.name} could not {doing}{about}: {code}: {_message(error)}"
            if code in _AUTH_CODES or status in (401, 403):
                raise RegistryAuthError(text) from None
            if code == "RepositoryNotFoundException":
                raise RepositoryNotFoundError(text) from None
            if code in _TRANSIENT_CODES or status >= 500 or status == 429:
                raise RegistryUnavailableError(text) from None
            raise RegistryError(text) from None
        except botocore.exceptions.NoRegionError:
            raise SpecError("registry.region: no AWS region configured") from None
        except (
            botocore.exceptions.NoCredentialsError,
            botocore.exceptions.PartialCredentialsError,
        ) as e:
            raise RegistryAuthError(
                f"{self.name} could not {doing}{about}: no AWS credentials "
                f"({e.__class__.__name__}); name an AwsCredentials block in "
                "registry.aws_credentials_block or configure boto3's standard chain"
            ) from None
        except (
            botocore.exceptions.EndpointConnectionError,
            botocore.exceptions.ConnectionClosedError,
            botocore.exceptions.ConnectTimeoutError,
            botocore.exceptions.ReadTimeoutError,
        ) as e:
            raise RegistryUnavailableError(
                f"{self.name} is unreachable; could not {doing}{about} ({e.__class__.__name__})"
            ) from None

    # -- Registry ----------------------------------------------------------------------------

    def login(self) -> RegistryAuth:
        """An authorization token, as the user `AWS` and a password good for 12 hours."""
        ids = {"registryIds": [self.spec.registry_id]} if self.spec.registry_id else {}
        data = self._call(
            "get an authorization token", lambda c: c.get_authorization_token(**ids)
        )["authorizationData"][0]
        try:
            username, password = (
                base64.b64decode(data["authorizationToken"]).decode().split(":", 1)
            )
        except (ValueError, KeyError):
            raise RegistryError(f"{self.name} sent an authorization token that is not "
                                "base64 of user:password") from None
        host = self.spec.registry_host or urlparse(data["proxyEndpoint"]).netloc
        return RegistryAuth(registry=host, username=username, password=SecretStr(password))

    def destination(self, repository: str, auth: RegistryAuth | None) -> Destination:
        if auth is None:
            auth = self.login()
        return Destination(
            registry=f"ECR {auth.registry}", host=auth.registry,
            api_url=api_url_for(auth.registry), path=repository, auth=auth,
        )

    def prepare(self, destination: Destination) -> None:
        """Create the repository when absent (with the spec's immutability and scanning)."""
        name = destination.path
        try:
            self._call(
                "look up the repository",
                lambda c: c.describe_repositories(repositoryNames=[name], **self._ids()),
                destination.repository,
            )
            return
        except RepositoryNotFoundError:
            if not self.spec.create_repository:
                raise RepositoryNotFoundError(
                    f"{destination.registry} has no repository {name!r} for "
                    f"{destination.repository} and registry.create_repository is false"
                ) from None
        self._call(
            "create the repository",
            lambda c: c.create_repository(
                repositoryName=name,
                imageTagMutability="IMMUTABLE" if self.spec.tag_immutability else "MUTABLE",
                imageScanningConfiguration={"scanOnPush": self.spec.scan_on_push},
                **self._ids(),
            ),
            destination.repository,
        )

    def confirm(self, destination: Destination, tag: str, digest: str) -> None:
        """Read the digest of `tag` back with describe_images; raise if it is not `digest`.

        ECR lists an image a moment after the push that made it, so an unknown tag is asked
        about again for up to `readback_seconds`.
        """
        image = f"{destination.repository}:{tag}"
        deadline = self.clock() + self.readback_seconds
        while True:
            try:
                found = self._call(
                    "describe the pushed image",
                    lambda c: c.describe_images(
                        repositoryName=destination.path, imageIds=[{"imageTag": tag}],
                        **self._ids(),
                    ),
                    image,
                )["imageDetails"]
            except RegistryError as e:
                if "ImageNotFoundException" not in str(e) or self.clock() >= deadline:
                    raise
                self.sleep(0.5)
                continue
            held = found[0]["imageDigest"] if found else None
            if held != digest:
                raise RegistryError(
                    f"{destination.registry} lists {held} as {image}, not the pushed {digest}"
                )
            return
