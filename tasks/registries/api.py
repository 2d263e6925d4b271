"""The OCI distribution API of one registry, as far as the push step and the poller need it.

`GET /v2/<name>/tags/list` lists the tags (for the poller);
`HEAD /v2/<name>/manifests/<reference>` answers with the digest a tag points at
(`Docker-Content-Digest`) without counting as a pull on Docker Hub; `GET` of the same gives the
manifest, whose `config.digest` is the image ID the Docker engine knows the image by. Basic
and bearer-token challenges (Docker Hub, most hosted registries) are answered with the
destination's credentials. Every failure becomes an error of `tasks.errors` that names the
registry and the image and never the secret.
"""

from __future__ import annotations

import base64
import email.utils
import hashlib
import json
import re
import time
from dataclasses import dataclass

import httpx

from tasks.errors import (
    ImageTooLargeError,
    RegistryAuthError,
    RegistryError,
    RegistryUnavailableError,
)
from tasks.registries.base import Destination

MANIFEST_TYPES = (
    "application/vnd.docker.distribution.manifest.v2+json",
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
    "application/vnd.oci.image.index.v1+json",
)
MAX_TAG_PAGES = 1000
"""Pages of a tag list followed at most: a registry whose Link always names a next page
would otherwise keep the poller busy for ever."""
_CHALLENGE_PARAM = re.compile(r'(\w+)="([^"]*)"')
_NEXT_LINK = re.compile(r'<([^>]+)>\s*;\s*rel="?next"?')


@dataclass(frozen=True)
class Manifest:
    """A manifest the registry holds: its digest and, for a single image, the image ID."""

    digest: str
    config: str | None
    """`config.digest`, i.e. the image ID; None for an index (a multi-platform list)."""


def retry_after_seconds(value: str | None, now: float | None = None) -> float | None:
    """A Retry-After header (seconds, or an HTTP date) as seconds from now; None if absent."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


class RegistryAPI:
    """HEAD and GET of manifests in one destination's repository.

    Made by `tasks.images.push_image` for its checks; `transport` lets tests put a fake in
    front. Raises RegistryAuthError, RepositoryNotFoundError, ImageTooLargeError,
    RegistryError or RegistryUnavailableError (transient, with `retry_after` when the
    registry sent one).
    """

    def __init__(
        self,
        destination: Destination,
        timeout: float = 15.0,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.destination = destination
        self._http = httpx.Client(timeout=timeout, transport=transport, follow_redirects=True)
        self._authorization: str | None = None

    def __enter__(self) -> RegistryAPI:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    # -- what the push step asks -------------------------------------------------------------

    def digest(self, reference: str) -> str | None:
        """The digest `reference` (a tag or digest) points at; None when there is none."""
        response = self._request("HEAD", reference)
        if response is None:
            return None
        digest = response.headers.get("Docker-Content-Digest")
        if not digest:  # a registry that leaves the header out of HEAD answers: ask with GET
            manifest = self.manifest(reference)
            return manifest.digest if manifest else None
        return digest

    def manifest(self, reference: str) -> Manifest | None:
        """The manifest under `reference`; None when there is none."""
        response = self._request("GET", reference)
        if response is None:
            return None
        digest = response.headers.get("Docker-Content-Digest")
        if not digest:
            digest = "sha256:" + hashlib.sha256(response.content).hexdigest()
        try:
            body = response.json()
        except ValueError:
            what = "answered a manifest that is not JSON"
            raise RegistryError(self._say(reference, what)) from None
        config = body.get("config", {}).get("digest") if isinstance(body, dict) else None
        return Manifest(digest=digest, config=config)

    def tags(self, page_size: int = 1000) -> list[str]:
        """Every tag of the repository (none when it does not exist yet), for the poller.

        Follows the `Link: <...>; rel="next"` pages the distribution spec defines, on the
        registry's own scheme, host and port only (`_next_page`).
        """
        base = self.destination.api_url
        url: str | None = f"{base}/v2/{self.destination.path}/tags/list?n={page_size}"
        tags: list[str] = []
        pages = 0
        while url:
            pages += 1
            if pages > MAX_TAG_PAGES:
                what = f"sent more than {MAX_TAG_PAGES} pages of tags (a next-page loop?)"
                raise RegistryError(self._say("tags", what))
            response = self._request("GET", "tags", url)
            if response is None:
                return tags
            try:
                tags += response.json().get("tags") or []
            except (ValueError, AttributeError):
                raise RegistryError(self._say("tags", "answered a tag list that is not JSON")) \
                    from None
            match = _NEXT_LINK.search(response.headers.get("Link", ""))
            url = self._next_page(match.group(1)) if match else None
        return tags

    def _next_page(self, link: str) -> str:
        """The URL a `Link: rel=next` names, resolved against the registry's API.

        The next request carries the registry's credentials, so a page elsewhere (another
        host, port or scheme: a compromised or misconfigured registry, a proxy's rewrite)
        is a RegistryError naming it, never a request.
        """
        base = httpx.URL(self.destination.api_url)
        target = base.join(link)
        if _origin(target) != _origin(base):
            where = f"{target.scheme}://{target.host}" + (f":{target.port}" if target.port else "")
            raise RegistryError(self.destination.redact(
                f"registry {self.destination.registry} sent a next-page link to {where}, "
                f"outside {_origin_text(base)}: not following it with the registry's credentials"
            ))
        return str(target)

    # -- HTTP --------------------------------------------------------------------------------

    def _image(self, reference: str) -> str:
        separator = "@" if reference.startswith("sha256:") else ":"
        return f"{self.destination.repository}{separator}{reference}"

    def _say(self, reference: str, what: str) -> str:
        return self.destination.redact(
            f"registry {self.destination.registry} {what} for {self._image(reference)}"
        )

    def _send(self, method: str, url: str, headers: dict[str, str]) -> httpx.Response:
        try:
            return self._http.request(method, url, headers=headers)
        except httpx.TransportError as e:
            raise RegistryUnavailableError(
                self.destination.redact(
                    f"registry {self.destination.registry} is unreachable at "
                    f"{self.destination.api_url} ({e.__class__.__name__}: {e})"
                )
            ) from None

    def _request(
        self, method: str, reference: str, url: str | None = None
    ) -> httpx.Response | None:
        """`method` on the manifest `reference` (or on `url`); None for a 404."""
        url = url or f"{self.destination.api_url}/v2/{self.destination.path}/manifests/{reference}"
        headers = {"Accept": ", ".join(MANIFEST_TYPES)}
        response = self._send(method, url, self._with_auth(headers))
        if response.status_code == 401:
            self._authorization = self._answer(response, reference)
            response = self._send(method, url, self._with_auth(headers))
        if response.status_code == 404:
            return None
        self._raise_for(response, reference)
        return response

    def _with_auth(self, headers: dict[str, str]) -> dict[str, str]:
        if self._authorization:
            return {**headers, "Authorization": self._authorization}
        return headers

    def _answer(self, response: httpx.Response, reference: str) -> str:
        """The Authorization header that answers a 401's challenge (basic or bearer)."""
        challenge = response.headers.get("WWW-Authenticate", "")
        scheme = challenge.split(" ", 1)[0].lower()
        auth = self.destination.auth
        if auth is None:
            raise RegistryAuthError(
                self._say(reference, "needs credentials (HTTP 401)")
                + "; name a credentials block in the spec's registry section"
            )
        if scheme == "basic":
            pair = f"{auth.username}:{auth.password.get_secret_value()}".encode()
            return "Basic " + base64.b64encode(pair).decode()
        if scheme != "bearer":
            raise RegistryAuthError(
                self._say(reference, f"asks for an unsupported authentication {scheme!r}")
            )
        params = dict(_CHALLENGE_PARAM.findall(challenge))
        realm = params.pop("realm", None)
        if not realm:
            raise RegistryError(self._say(reference, "sent a bearer challenge without a realm"))
        params.setdefault("scope", f"repository:{self.destination.path}:pull")
        try:
            token = self._http.get(
                realm, params=params,
                auth=(auth.username, auth.password.get_secret_value()),
            )
        except httpx.TransportError as e:
            raise RegistryUnavailableError(
                self._say(reference, f"has an unreachable token service ({e.__class__.__name__})")
            ) from None
        if token.status_code in (401, 403):
            raise RegistryAuthError(
                self._say(reference, f"refused the credentials of user {auth.username!r} "
                          f"(token service HTTP {token.status_code})")
            )
        self._raise_for(token, reference)
        try:
            data = token.json()
            value = data.get("token") or data["access_token"]
        except (ValueError, KeyError, AttributeError):
            what = "got no token from its token service"
            raise RegistryError(self._say(reference, what)) from None
        return f"Bearer {value}"

    def _raise_for(self, response: httpx.Response, reference: str) -> None:
        code = response.status_code
        if code < 400:
            return
        reason = _error_text(response)
        if code in (401, 403):
            user = self.destination.auth.username if self.destination.auth else None
            who = f" of user {user!r}" if user else ""
            raise RegistryAuthError(
                self._say(reference, f"refused the credentials{who} (HTTP {code}{reason})")
            )
        if code == 429 or code >= 500:
            wait = retry_after_seconds(response.headers.get("Retry-After"))
            asked = f", asked to retry after {wait:g} s" if wait is not None else ""
            what = "is rate-limiting requests" if code == 429 else "failed"
            raise RegistryUnavailableError(
                self._say(reference, f"{what} (HTTP {code}{reason}{asked})"), retry_after=wait
            )
        if code == 413:
            what = f"refused as too large (HTTP 413{reason})"
            raise ImageTooLargeError(self._say(reference, what))
        raise RegistryError(self._say(reference, f"answered HTTP {code}{reason}"))


_DEFAULT_PORTS = {"http": 80, "https": 443}


def _origin(url: httpx.URL) -> tuple[str, str, int | None]:
    return url.scheme, url.host, url.port or _DEFAULT_PORTS.get(url.scheme)


def _origin_text(url: httpx.URL) -> str:
    scheme, host, port = _origin(url)
    return f"{scheme}://{host}:{port}"


def _error_text(response: httpx.Response) -> str:
    """`: CODE message` from a distribution error body, or nothing."""
    if not response.content:
        return ""
    try:
        errors = json.loads(response.content).get("errors") or []
        first = errors[0]
        return f": {first.get('code', '')} {first.get('message', '')}".rstrip()
    except (ValueError, AttributeError, IndexError, TypeError):
        return ""
