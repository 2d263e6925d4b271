"""The `registry:` models of the release spec, one per `registry.kind`; the registries of this
package are built from them (`tasks.registries.get_registry`)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BeforeValidator, Field

from tasks.fields import HOST, ImageTag, SpecModel


class _RegistryCommon(SpecModel):
    """What every registry kind offers: extra tags, and whether an existing tag may move."""

    extra_tags: list[ImageTag] = Field(default_factory=list)
    """Tags pushed besides the version, e.g. `latest`."""
    allow_tag_overwrite: bool | list[ImageTag] = False
    """Move a tag that already points at another image: `true` for any tag, or a list."""

    def may_overwrite(self, tag: str) -> bool:
        """Whether pushing may move `tag` off the image the registry has under it."""
        if isinstance(self.allow_tag_overwrite, bool):
            return self.allow_tag_overwrite
        return tag in self.allow_tag_overwrite


class GenericRegistrySpec(_RegistryCommon):
    """Any OCI registry with basic auth or none (`tasks/registries/generic.py`)."""

    kind: Literal["generic"] = "generic"
    url: Annotated[str, Field(pattern=HOST)]
    credentials_block: str | None = None
    """Name of a prefect-docker DockerRegistryCredentials block."""


class DockerHubRegistrySpec(_RegistryCommon):
    """Docker Hub: images are `docker.io/<namespace>/<image.repository>`."""

    kind: Literal["dockerhub"]
    namespace: Annotated[str, Field(pattern=r"^[a-z0-9]+(?:[._-][a-z0-9]+)*$", max_length=255)]
    credentials_block: str | None = None
    """Name of a prefect-docker DockerRegistryCredentials block (an access token as password)."""
    endpoint: Annotated[str, Field(pattern=HOST)] | None = None
    """A registry to use instead of Docker Hub, speaking its protocol (tests, a mirror)."""


class EcrRegistrySpec(_RegistryCommon):
    """Amazon ECR, reached with boto3; the registry host comes from the authorization token."""

    kind: Literal["ecr"]
    region: Annotated[str, Field(pattern=r"^[a-z]{2}(-[a-z]+)+-\d+$")] | None = None
    """AWS region; boto3's (AWS_DEFAULT_REGION, ~/.aws/config, the block's) when not given."""
    registry_id: Annotated[str, Field(pattern=r"^\d{12}$")] | None = None
    """The AWS account whose registry to use; the credentials' own account when not given."""
    aws_credentials_block: str | None = None
    """Name of a prefect-aws AwsCredentials block; boto3's standard chain when not given."""
    create_repository: bool = True
    tag_immutability: bool = False
    """For a repository Ferryman creates: IMMUTABLE tags."""
    scan_on_push: bool = False
    """For a repository Ferryman creates: scan each pushed image."""
    endpoint_url: Annotated[str, Field(pattern=r"^https?://")] | None = None
    """The ECR API's address instead of the region's (moto in tests, ECR-compatible services)."""
    registry_host: Annotated[str, Field(pattern=HOST)] | None = None
    """The registry to push to instead of the token's proxyEndpoint (with `endpoint_url`)."""


REGISTRY_KINDS = ("generic", "dockerhub", "ecr")


def _generic_by_default(value: object) -> object:
    # `kind` was optional before there was more than one kind; keep specs without it valid.
    if isinstance(value, dict) and "kind" not in value:
        return {**value, "kind": "generic"}
    return value


RegistrySpec = Annotated[
    Annotated[
        GenericRegistrySpec | DockerHubRegistrySpec | EcrRegistrySpec,
        Field(discriminator="kind"),
    ],
    BeforeValidator(_generic_by_default),
]
"""Where to push: one model per `registry.kind`; see the README's registry section."""
