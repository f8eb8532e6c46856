"""Alertmanager's alert fingerprint: FNV-1a 64 over the sorted label set.

Reproduces prometheus/common ``model.LabelSet.Fingerprint()`` from
Alertmanager's Go code: names sorted byte-wise, each name and value
followed by the separator byte 0xFF, formatted as ``%016x``.
"""

from collections.abc import Mapping
from functools import lru_cache

_OFFSET = 14695981039346656037
_PRIME = 1099511628211
_MASK = (1 << 64) - 1
_SEPARATOR = 0xFF


def fingerprint(labels: Mapping[str, str]) -> str:
    """Return the 16-hex-digit fingerprint of ``labels``."""
    # Alertmanager resends the same label sets every group_interval, so the
    # per-byte Python loop is worth caching on the (hashable) sorted items.
    return _fingerprint_items(tuple(sorted(labels.items())))


@lru_cache(maxsize=65536)
def _fingerprint_items(items: tuple[tuple[str, str], ...]) -> str:
    h = _OFFSET
    for name, value in items:
        for part in (name, value):
            for byte in part.encode("utf-8"):
                h = ((h ^ byte) * _PRIME) & _MASK
            h = ((h ^ _SEPARATOR) * _PRIME) & _MASK
    return f"{h:016x}"
