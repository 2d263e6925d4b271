"""What a target records on the stable workload itself, as string key/values: Swarm labels
(`ferryman.stable.version`), Kubernetes annotations (`ferryman.io/stable.version`).

One home for the record's shape, so both platforms read and write the same entries:
`<prefix>[<which>]version` and `...image` for a version (`which`: "" for what runs now,
`stable.`, `previous.`), `<prefix>release.run|version|started` for a release in flight.
"""

from __future__ import annotations

from tasks.targets.base import InFlight, Version

RELEASE = "release."
MANAGED = "managed"
"""Set on a workload once Ferryman has recorded on it."""
TEMPLATE = "template"
"""A version's whole task or pod template (JSON), so that a rollback restores the environment,
command and limits it ran with, not only its image."""


def version_entries(prefix: str, which: str, version: Version | None) -> dict[str, str]:
    """The entries recording `version` as `which` (none for None)."""
    if version is None:
        return {}
    return {f"{prefix}{which}version": version.version, f"{prefix}{which}image": version.image}


def version_of(entries: dict[str, str], prefix: str, which: str) -> Version | None:
    version = entries.get(f"{prefix}{which}version")
    image = entries.get(f"{prefix}{which}image")
    return Version(version, image) if version and image else None


def mark_entries(prefix: str, mark: InFlight) -> dict[str, str]:
    """The entries of a release in flight."""
    return {f"{prefix}{RELEASE}run": mark.run_id, f"{prefix}{RELEASE}version": mark.version,
            f"{prefix}{RELEASE}started": mark.started}


def mark_of(entries: dict[str, str], prefix: str) -> InFlight | None:
    run = entries.get(f"{prefix}{RELEASE}run")
    if not run:
        return None
    return InFlight(run, entries.get(f"{prefix}{RELEASE}version", "?"),
                    entries.get(f"{prefix}{RELEASE}started", ""))


def without_mark(entries: dict[str, str], prefix: str) -> dict[str, str]:
    """`entries` less the release's mark."""
    return {k: v for k, v in entries.items() if not k.startswith(f"{prefix}{RELEASE}")}


def marked(entries: dict[str, str], prefix: str, in_flight: InFlight,
           restore_point: Version | None) -> dict[str, str]:
    """`entries` with a release's mark and what it restores. A workload Ferryman has not
    recorded on yet gets what runs now as its stable version: the only known good."""
    out = dict(entries)
    if restore_point is not None and f"{prefix}{MANAGED}" not in out:
        out |= version_entries(prefix, "stable.", restore_point)
    return (out | {f"{prefix}{MANAGED}": "true"} | mark_entries(prefix, in_flight)
            | version_entries(prefix, "previous.", restore_point))


def unmarked(entries: dict[str, str], prefix: str, stable: Version | None) -> dict[str, str]:
    """`entries` less the release's mark; with `stable`, recording it (and the template it
    runs with) as the stable version."""
    out = without_mark(entries, prefix)
    if stable is not None:
        out |= version_entries(prefix, "stable.", stable)
        template = out.get(f"{prefix}{TEMPLATE}")
        if template:
            out[f"{prefix}stable.{TEMPLATE}"] = template
    return out


def tag_of(image: str) -> str:
    """The tag of an image reference, for workloads Ferryman did not record ('unknown' if
    none)."""
    name = image.split("@", 1)[0]
    last = name.rsplit("/", 1)[-1]
    return last.split(":", 1)[1] if ":" in last else "unknown"
