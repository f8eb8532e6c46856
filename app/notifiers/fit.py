"""Fitting a message under a sink's size limit by cutting its parts.

A sink's limit applies to the whole request (Teams 28 KB, Google Chat 32,000
bytes), but what can be shortened is a few strings inside it, and escaping
(Markdown backslashes, HTML entities, JSON) makes their cost in bytes hard
to predict. So the notifier supplies ``fits``, which renders and measures
the whole request, and these helpers search for the longest cut that passes:
size grows with the length kept, so a binary search finds it in about
log2(n) renderings.
"""

from collections.abc import Callable

from app.core.message import cut


def longest_fit(text: str, floor: int, fits: Callable[[str], bool]) -> str:
    """``text`` whole if it fits, else its longest cut (with "…") that fits.

    Never shorter than ``floor`` code points: when even that does not fit,
    the ``floor`` cut is returned and the caller shortens something else.
    """
    floor = max(floor, 1)  # at least the marker, so a cut stays visible
    if len(text) <= floor or fits(text):
        return text
    lo, hi = floor, len(text) - 1
    if not fits(cut(text, lo)):
        return cut(text, lo)
    while lo < hi:  # invariant: cut(text, lo) fits
        mid = (lo + hi + 1) // 2
        if fits(cut(text, mid)):
            lo = mid
        else:
            hi = mid - 1
    return cut(text, lo)


def largest_fit(top: int, floor: int, fits: Callable[[int], bool]) -> int:
    """The largest ``n`` in ``[floor, top]`` with ``fits(n)``, else ``floor``.

    ``top`` itself is returned when it is not above ``floor``.

    ``fits`` must be monotonic: if it holds for ``n`` it holds for anything
    smaller (how many labels to keep, how long each value may be).
    """
    if top <= floor or fits(top):
        return top
    lo, hi = floor, top - 1
    if not fits(lo):
        return floor
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if fits(mid):
            lo = mid
        else:
            hi = mid - 1
    return lo
