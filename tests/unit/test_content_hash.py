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
