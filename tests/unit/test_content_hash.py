"""The content hash is stored beside every alert: its digest must never change."""

import hashlib
import json

from hypothesis import given
from hypothesis import strategies as st

from app.core.domain import content_hash


def reference(annotations: dict[str, str], generator_url: str) -> str:
    """The definition the stored hashes were made with."""
    text = json.dumps([sorted(annotations.items()), generator_url], separators=(",", ":"))
    return hashlib.blake2b(text.encode(), digest_size=8).hexdigest()


def test_known_digests() -> None:
    # Digests of the JSON definition, pinned: rows stored by earlier versions hold them.
    assert content_hash({}, "") == "84e8740bf60602fc"
    assert content_hash({"summary": "disk full"}, "http://p/graph") == "d0a9c7ba2a3b038d"
    assert content_hash({"description": 'caf\u00e9 "q"\n'}, "http://x") == "c46c3760ef8b7e46"


@given(
    st.dictionaries(st.text(max_size=20), st.text(max_size=60), max_size=8),
    st.text(max_size=60),
)
def test_same_digest_as_the_json_definition(annotations: dict[str, str], url: str) -> None:
    # Any text: quotes, backslashes, control characters, non-ASCII, lone surrogates.
    assert content_hash(annotations, url) == reference(annotations, url)


@given(
    st.dictionaries(st.text(max_size=20), st.text(max_size=60), min_size=2, max_size=8),
    st.text(max_size=60),
)
def test_a_repeat_and_a_reordered_set_get_the_same_digest(
    annotations: dict[str, str], url: str
) -> None:
    # The memo is keyed by the items in their order on the wire: a repeat is a
    # hit, a reordered set a miss, and both must answer what the definition says.
    first = content_hash(annotations, url)
    reordered = dict(reversed(list(annotations.items())))
    assert content_hash(annotations, url) == first
    assert content_hash(reordered, url) == first == reference(annotations, url)


def test_the_memo_stays_bounded_and_right_past_its_size() -> None:
    from app.core import domain

    kept = domain._CONTENT_HASHES_KEPT
    for i in range(kept + 10):
        annotations = {"summary": f"disk {i} full"}
        assert content_hash(annotations, "u") == reference(annotations, "u")
    assert len(domain._content_hashes) <= kept
    # Emptied when full, never stale: an early set is still hashed right.
    assert content_hash({"summary": "disk 0 full"}, "u") == reference(
        {"summary": "disk 0 full"}, "u"
    )


def test_without_the_memo_the_same_digest_and_the_memo_untouched() -> None:
    from app.core import domain

    domain._content_hashes.clear()
    annotations = {"summary": "not remembered"}
    assert content_hash(annotations, "u", remember=False) == reference(annotations, "u")
    assert domain._content_hashes == {}
