"""Small helpers shared by the tests."""

from __future__ import annotations

import copy


def changed(data: dict, path: str, value) -> dict:
    """A deep copy of `data` with the value at dotted `path` replaced (KeyError: removed).

    Integer parts index lists: `events.1.target.tag`.
    """
    data = copy.deepcopy(data)
    *parents, last = path.split(".")
    node = data
    for key in parents:
        node = node[int(key)] if key.isdigit() else node[key]
    if value is KeyError:
        del node[last]
    else:
        node[last] = value
    return data
