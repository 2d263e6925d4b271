"""Building blocks of the release spec's models, shared by the spec, the registries' and the
targets' models: the strict base model, the name patterns, and the check every field that names
a file makes.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, ValidationError, ValidationInfo

DNS_LABEL = r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$"
REPOSITORY = r"^[a-z0-9]+(?:[._-][a-z0-9]+)*(?:/[a-z0-9]+(?:[._-][a-z0-9]+)*)*$"
TAG = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$")


class SpecModel(BaseModel):
    """A part of the release spec: unknown keys are errors, and a loaded spec never changes."""

    model_config = ConfigDict(extra="forbid", frozen=True)


def existing_path(value: Path, info: ValidationInfo, what: str, is_dir: bool) -> Path:
    """Resolve a path from the spec file's folder and check it is there."""
    base = (info.context or {}).get("base_dir")
    if base is not None and not value.is_absolute():
        value = Path(base) / value
    value = value.resolve()
    try:
        found = value.is_dir() if is_dir else value.is_file()
    except OSError as e:  # e.g. a name too long: pathlib re-raises all but "not there"
        raise ValueError(f"{what} {str(value)[:200]!r}: {e.strerror}") from None
    if not found:
        raise ValueError(f"{what} {value} {'is not a directory' if is_dir else 'does not exist'}")
    return value


HOST = r"^[A-Za-z0-9.-]+(:\d+)?$"
ImageTag = Annotated[str, Field(pattern=TAG.pattern)]
"""An image tag, as `docker tag` accepts one."""


def _without_union_tags(loc: tuple, union_tags: Mapping[tuple, tuple[str, ...]]) -> tuple:
    """pydantic names the member of a tagged union in an error's path (`registry.ecr.region`);
    the user wrote no such key, so the path drops it (`registry.region`)."""
    out: list = []
    dropped = False
    for part in loc:
        shape = tuple(int if isinstance(p, int) else p for p in out)
        if not dropped and part in union_tags.get(shape, ()):
            dropped = True  # a tag can equal the field after it: `steps[0].weight.weight`
            continue
        dropped = False
        out.append(part)
    return tuple(out)


_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_-]*")


def format_validation_error(error: ValidationError, source: str, what: str = "release spec",
                            union_tags: Mapping[tuple, tuple[str, ...]] | None = None) -> str:
    """One line per problem, each naming the field path, e.g. `analysis.metrics[0].query`;
    `union_tags` (by path shape) are the tags of tagged unions to leave out of paths."""
    lines = [f"{source}: invalid {what}"]
    for problem in error.errors():
        path = ""
        loc = problem["loc"]
        loc = _without_union_tags(loc, union_tags or {})
        for part in loc:
            if isinstance(part, int):
                path += f"[{part}]"
            elif not _KEY.fullmatch(str(part)):  # a stray key with spaces, dots, newlines...
                path += f"[{str(part)!r}]"
            else:
                path += f".{part}" if path else str(part)
        message = problem["msg"].removeprefix("Value error, ")
        if problem["type"] == "union_tag_invalid":  # `kind: nomad`: name the key and choices
            ctx = problem["ctx"]
            path = f"{path}.{ctx['discriminator'].strip(chr(39))}" if path else path
            message = f"{ctx['tag']!r} is not one of {ctx['expected_tags']}"
        lines.append(f"  {path or '(top level)'}: {message}")
    return "\n".join(lines)
