"""Run names: ``beta-4.0__seed-1__3fa2b1c8``, readable and unique, the same on every machine."""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping, Sequence
from typing import Any


def short_keys(keys: Sequence[str]) -> dict[str, str]:
    """Shortest dotted suffix of each key that no other key ends with: vision.beta → beta."""
    out = {}
    for k in keys:
        parts = k.split(".")
        for n in range(1, len(parts) + 1):
            cand = ".".join(parts[-n:])
            if not any(o != k and (o == cand or o.endswith("." + cand)) for o in keys):
                out[k] = cand
                break
        else:
            out[k] = k
    return out


def _slug(v: Any) -> str:
    if isinstance(v, list):
        s = "-".join(_slug(x) for x in v)
    elif isinstance(v, dict):
        s = "-".join(f"{k}-{_slug(x)}" for k, x in v.items())
    elif isinstance(v, bool) or v is None:
        s = json.dumps(v)
    else:
        s = str(v)
    s = "".join(c for c in s if c.isalnum() or c in "._-")
    return re.sub("_+", "_", s)[:24]  # "__" separates pairs in a run name


def make_run_name(overrides: Mapping[str, Any], short: Mapping[str, str] | None = None) -> str:
    """``beta-4.0__seed-1__3fa2b1c8``: readable key-value pairs, then 8 hex digits of their hash.

    The hash is over the canonical JSON of the overrides, so the name is the same whatever the
    process, order of keys or machine; the summary is cut at 80 characters, the hash keeps it unique.
    Only letters, digits, '-', '_' and '.' (a valid ``name`` and a portable directory name).
    """
    short = short or {}
    digest = hashlib.sha256(json.dumps(overrides, sort_keys=True, default=str).encode()).hexdigest()[:8]
    summary = "__".join(f"{short.get(k, k)}-{_slug(v)}" for k, v in overrides.items())[:80].strip("_-.")
    return f"{summary}__{digest}" if summary else digest

