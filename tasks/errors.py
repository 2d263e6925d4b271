"""Ferryman's exceptions, in two families that decide whether Prefect retries a step.

`TransientError` (network, 5xx, 429, time-outs) is worth retrying; `PermanentError`
(bad spec, image not found, credentials refused) is not: retrying it only delays the same
failure. `retry_transient` is the `retry_condition_fn` every retried task uses.
"""

from __future__ import annotations

from typing import Any


class FerrymanError(Exception):
    """Base of every error Ferryman raises on purpose."""


class TransientError(FerrymanError):
    """A failure that may pass: retry the step."""


class PermanentError(FerrymanError):
    """A failure that will not pass by retrying: stop and report."""


class SpecError(PermanentError):
    """The release spec (or an orchestration file it names) is invalid."""


class BuildError(PermanentError):
    """`docker build` failed; the message carries the tail of the build log."""


class RegistryError(PermanentError):
    """The registry rejected the request for a reason retrying will not fix."""


class RegistryAuthError(RegistryError):
    """The registry refused the credentials (or found none where it needs some)."""


class RepositoryNotFoundError(RegistryError):
    """The registry has no such repository and Ferryman may not create it."""


class ImageTooLargeError(RegistryError):
    """The registry refused a layer or manifest as too large (413)."""


class TagConflictError(RegistryError):
    """A tag already points at another image and the spec does not allow moving it."""


class ImageNotFoundError(RegistryError):
    """A triggered release names an image (tag or digest) the registry does not hold."""


class RegistryUnavailableError(TransientError):
    """The registry did not answer, answered 5xx, or asked us to slow down (429).

    `retry_after` is the wait in seconds the registry asked for (a Retry-After header), if any.
    """

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after

    def __reduce__(self):  # keep `retry_after` when Prefect pickles the exception
        return (self.__class__, (str(self), self.retry_after))


class EventNotSentError(TransientError):
    """An event Prefect could not take now (its API does not answer); send it again later."""


class DockerEngineUnavailable(TransientError):
    """The Docker engine that builds and pushes images could not be reached."""


class TargetError(PermanentError):
    """The deploy target rejected a request (unknown service, invalid service spec)."""


class TargetUnavailableError(TransientError):
    """The deploy target (Docker engine, Kubernetes API) could not be reached."""


class TargetConflictError(TargetUnavailableError):
    """Someone changed the object between Ferryman's read and its write (409): read again."""


class DeployFailed(PermanentError):
    """The platform could not bring the new version up (crash loop, deadline passed)."""


class StackError(FerrymanError):
    """The local stack could not be brought up or down."""


def retry_transient(task: Any, task_run: Any, state: Any) -> bool:
    """Prefect `retry_condition_fn`: retry a task run only when it failed transiently.

    Called by Prefect after a task run fails; returns True to let it retry.
    """
    try:
        state.result()
    except TransientError:
        return True
    except Exception:
        return False
    return False
