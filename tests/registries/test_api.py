"""The registry API client against real docker-registry processes of the tests' own (and,
for Docker Hub's bearer-token challenge, which the local registry does not send, a fake)."""

from __future__ import annotations

import email.utils
import logging
import time

import httpx
import pytest
from pydantic import SecretStr

from tasks.errors import (
    ImageTooLargeError,
    RegistryAuthError,
    RegistryError,
    RegistryUnavailableError,
)
from tasks.registries.api import RegistryAPI, retry_after_seconds
from tasks.registries.base import Destination, RegistryAuth
from tests.registries.servers import basic, upload_image

PASSWORD = "s3cret-Pa55word-never-logged"


def destination(host: str, user: str | None = "pusher", password: str = PASSWORD,
                path: str = "team/app") -> Destination:
    auth = RegistryAuth(host, user, SecretStr(password)) if user else None
    return Destination(registry=host, host=host, api_url=f"http://{host}", path=path, auth=auth)


def test_reads_the_digest_and_image_id_a_tag_points_at(start_registry):
    registry = start_registry({"pusher": PASSWORD})
    digest, image_id = upload_image(registry, "team/app", "1.0.0")
    with RegistryAPI(destination(registry.host)) as api:
        assert api.digest("1.0.0") == digest
        manifest = api.manifest("1.0.0")
        assert (manifest.digest, manifest.config) == (digest, image_id)
        assert api.digest("2.0.0") is None  # no such tag
    with RegistryAPI(destination(registry.host, path="team/none")) as api:
        assert api.digest("1.0.0") is None  # no such repository


def test_lists_every_tag_across_pages(start_registry):
    registry = start_registry({"pusher": PASSWORD})
    for tag in ("1.0.0", "1.1.0", "2.0.0"):
        upload_image(registry, "team/app", tag)
    with RegistryAPI(destination(registry.host)) as api:
        assert sorted(api.tags(page_size=2)) == ["1.0.0", "1.1.0", "2.0.0"]  # Link: rel=next
    with RegistryAPI(destination(registry.host, path="team/none")) as api:
        assert api.tags() == []  # no repository yet: nothing to release


def test_wrong_password_is_refused_without_the_secret(start_registry, caplog):
    registry = start_registry({"pusher": "the-right-one"})
    caplog.set_level(logging.DEBUG)
    with RegistryAPI(destination(registry.host)) as api, \
            pytest.raises(RegistryAuthError) as e:
        api.digest("1.0.0")
    text = str(e.value)
    assert "refused the credentials of user 'pusher' (HTTP 401" in text
    assert registry.host in text and f"{registry.host}/team/app:1.0.0" in text
    assert PASSWORD not in text and PASSWORD not in caplog.text


def test_missing_credentials_are_named(start_registry):
    registry = start_registry({"pusher": PASSWORD})
    with RegistryAPI(destination(registry.host, user=None)) as api, \
            pytest.raises(RegistryAuthError, match="needs credentials"):
        api.digest("1.0.0")


def test_registry_without_auth_needs_no_credentials(start_registry):
    registry = start_registry()
    digest, _ = upload_image(registry, "team/app", "1.0.0")
    with RegistryAPI(destination(registry.host, user=None)) as api:
        assert api.digest("1.0.0") == digest


def test_stopped_registry_is_unavailable_not_refused(start_registry):
    registry = start_registry({"pusher": PASSWORD})
    registry.stop()
    with RegistryAPI(destination(registry.host)) as api, \
            pytest.raises(RegistryUnavailableError) as e:
        api.digest("1.0.0")
    assert f"registry {registry.host} is unreachable" in str(e.value)
    assert e.value.retry_after is None


def test_throttling_carries_retry_after(start_registry, start_front):
    registry = start_registry({"pusher": PASSWORD})
    front = start_front(registry.host, lambda method, path, n: (429, {"Retry-After": "7"}))
    with RegistryAPI(destination(front.host)) as api, \
            pytest.raises(RegistryUnavailableError) as e:
        api.digest("1.0.0")
    assert e.value.retry_after == 7
    assert "rate-limiting requests (HTTP 429, asked to retry after 7 s)" in str(e.value)


def test_server_errors_are_transient_and_413_is_permanent(start_registry, start_front):
    registry = start_registry({"pusher": PASSWORD})
    answers = iter([(503, {}), (413, {})])
    front = start_front(registry.host, lambda method, path, n: next(answers))
    with RegistryAPI(destination(front.host)) as api:
        with pytest.raises(RegistryUnavailableError, match=r"failed \(HTTP 503"):
            api.digest("1.0.0")
        with pytest.raises(ImageTooLargeError, match="too large"):
            api.digest("1.0.0")


def test_answers_a_bearer_challenge_as_docker_hub_sends_it():
    """Docker Hub: 401 with a Bearer challenge, a token from the realm, then the answer."""
    seen: list[httpx.Request] = []

    def hub(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        if request.url.host == "auth.example":
            ok = request.headers.get("Authorization") == basic("u", "p")
            return httpx.Response(200, json={"token": "T0K"}) if ok else httpx.Response(401)
        if request.headers.get("Authorization") == "Bearer T0K":
            return httpx.Response(200, headers={"Docker-Content-Digest": "sha256:abc"})
        return httpx.Response(401, headers={"WWW-Authenticate": (
            'Bearer realm="https://auth.example/token",service="registry.example"')})

    where = Destination("Docker Hub", "docker.io", "https://hub.example", "acme/demo",
                        RegistryAuth("docker.io", "u", SecretStr("p")))
    with RegistryAPI(where, transport=httpx.MockTransport(hub)) as api:
        assert api.digest("1.0.0") == "sha256:abc"
        assert api.digest("1.0.1") == "sha256:abc"  # the token is kept
    token_request = seen[1]
    assert token_request.url.params["scope"] == "repository:acme/demo:pull"
    assert token_request.url.params["service"] == "registry.example"
    assert len(seen) == 4

    wrong = Destination("Docker Hub", "docker.io", "https://hub.example", "acme/demo",
                        RegistryAuth("docker.io", "u", SecretStr("nope")))
    with RegistryAPI(wrong, transport=httpx.MockTransport(hub)) as api, \
            pytest.raises(RegistryAuthError, match="token service HTTP 401") as e:
        api.digest("1.0.0")
    assert "nope" not in str(e.value)


@pytest.mark.parametrize("link, named", [
    ("https://elsewhere.example/v2/acme/demo/tags/list?last=b", "https://elsewhere.example"),
    ("//elsewhere.example:8443/v2/acme/demo/tags/list?last=b", "https://elsewhere.example:8443"),
    ("http://hub.example/v2/acme/demo/tags/list?last=b", "http://hub.example"),
    ("https://hub.example:444/v2/acme/demo/tags/list?last=b", "https://hub.example:444"),
])
def test_next_page_link_off_the_registry_is_refused_and_never_requested(link, named):
    seen: list[httpx.URL] = []

    def registry(request: httpx.Request) -> httpx.Response:
        seen.append(request.url)
        return httpx.Response(200, json={"tags": ["a", "b"]},
                              headers={"Link": f'<{link}>; rel="next"'})

    where = Destination("hub.example", "hub.example", "https://hub.example", "acme/demo",
                        RegistryAuth("hub.example", "u", SecretStr(PASSWORD)))
    with RegistryAPI(where, transport=httpx.MockTransport(registry)) as api, \
            pytest.raises(RegistryError, match="next-page link to " + named) as e:
        api.tags()
    assert [url.host for url in seen] == ["hub.example"]
    assert "outside https://hub.example:443" in str(e.value)


def test_next_page_link_on_the_registry_is_followed_with_or_without_its_host():
    pages = {
        "/v2/acme/demo/tags/list": ("</v2/acme/demo/tags/list?last=b>", ["a", "b"]),
        "/v2/acme/demo/tags/list?last=b": (
            "<https://hub.example:443/v2/acme/demo/tags/list?last=c>", ["c"]),
        "/v2/acme/demo/tags/list?last=c": (None, ["d"]),
    }

    def registry(request: httpx.Request) -> httpx.Response:
        path = request.url.raw_path.decode().replace("?n=1000", "").replace("&n=1000", "")
        link, tags = pages[path]
        return httpx.Response(200, json={"tags": tags},
                              headers={"Link": f'{link}; rel="next"'} if link else {})

    where = Destination("hub.example", "hub.example", "https://hub.example", "acme/demo", None)
    with RegistryAPI(where, transport=httpx.MockTransport(registry)) as api:
        assert api.tags() == ["a", "b", "c", "d"]


def test_tag_list_whose_next_page_never_ends_is_an_error(monkeypatch):
    monkeypatch.setattr("tasks.registries.api.MAX_TAG_PAGES", 5)
    requests: list[httpx.Request] = []

    def registry(request: httpx.Request) -> httpx.Response:
        requests.append(request)
        return httpx.Response(200, json={"tags": ["a"]},
                              headers={"Link": '</v2/acme/demo/tags/list?last=a>; rel="next"'})

    where = Destination("hub.example", "hub.example", "https://hub.example", "acme/demo", None)
    with RegistryAPI(where, transport=httpx.MockTransport(registry)) as api, \
            pytest.raises(RegistryError, match="more than 5 pages"):
        api.tags()
    assert len(requests) == 5


def test_retry_after_reads_seconds_and_dates():
    now = time.time()
    assert retry_after_seconds("12") == 12
    assert retry_after_seconds(None) is None and retry_after_seconds("soon") is None
    date = email.utils.formatdate(now + 30, usegmt=True)
    assert 28 <= retry_after_seconds(date, now=now) <= 30
    assert retry_after_seconds(email.utils.formatdate(now - 30, usegmt=True), now=now) == 0
