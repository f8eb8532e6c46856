"""Which runbook link an alert gets.

Order: the alert's own ``runbook_url`` annotation; else the first
``runbooks.rules`` entry whose matchers match; else ``runbooks.default``;
else none. Only absolute http(s) URLs are ever returned: a link that
renders to anything else is skipped, so ``javascript:`` or a relative path
can never reach a notification.

Label and annotation values are data from whoever sends alerts, so a value
substituted into a rule's template is encoded for where it lands: in the
path or the fragment as part of one segment (``/``, ``?``, ``#``, ``\\``,
``@``, ``..`` cannot move the link elsewhere), in the query as one value
(``&`` and ``=`` cannot add parameters). The template's scheme and host are
its own: a value that lands there may only hold letters, digits and ``-``
(one DNS label, or a port), or the rule is skipped.
"""

import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import quote, unquote, urlsplit

from jinja2 import Template

from app.config.templating import URL_MARK, render_marked
from app.core.matchers import Matcher, matches_all

log = logging.getLogger(__name__)

ANNOTATION = "runbook_url"


@dataclass(frozen=True)
class RunbookRule:
    matchers: tuple[Matcher, ...]
    template: Template
    source: str  # the YAML path of the rule, e.g. "runbooks.rules[0]"


@dataclass(frozen=True)
class RunbookCatalog:
    rules: tuple[RunbookRule, ...] = ()
    default: Template | None = None


@dataclass(frozen=True)
class Runbook:
    url: str | None
    source: str  # "annotation", a rule's YAML path, "runbooks.default" or "none"


NO_RUNBOOK = Runbook(None, "none")


def is_http_url(url: str) -> bool:
    if not url or any(ch.isspace() or ord(ch) < 0x20 for ch in url):
        return False
    try:
        parts = urlsplit(url)
    except ValueError:
        return False
    return parts.scheme in ("http", "https") and bool(parts.netloc)


# Characters a URL may carry as they are; everything else (spaces, braces,
# quotes, non-ASCII) is percent-encoded. "%" stays, so encoding is idempotent.
_URL_SAFE = ":/?#[]@!$&'()*+,;=%~-._"


def normalize_url(url: str) -> str:
    """Percent-encode what a label value put into a URL that cannot stand there."""
    return quote(url.strip(), safe=_URL_SAFE)


class UnsafeValue(ValueError):
    """A substituted value cannot stand where the template puts it."""


_MARKER = re.compile(re.escape(URL_MARK) + r"(\d+)" + re.escape(URL_MARK))
# Unreserved characters, and a "%" that already starts an escape (Jinja's
# ``urlencode`` filter output passes unchanged); everything else is encoded.
_KEEP = re.compile(r"[A-Za-z0-9_.~-]|%[0-9A-Fa-f]{2}")
_HOST_PART = re.compile(r"[A-Za-z0-9-]*")


def encode_component(value: str) -> str:
    out: list[str] = []
    pos = 0
    while pos < len(value):
        kept = _KEEP.match(value, pos)
        if kept:
            out.append(kept.group(0))
            pos = kept.end()
        else:
            out.append(quote(value[pos], safe=""))
            pos += 1
    return "".join(out)


def _position(literal: str) -> str:
    """Where text appended to ``literal`` (the template's own text so far) lands."""
    scheme_end = literal.find("://")
    if scheme_end < 0:
        return "scheme"
    rest = literal[scheme_end + 3 :]
    if "#" in rest:
        return "fragment"
    if "?" in rest:
        return "query"
    if "/" in rest:
        return "path"
    return "authority"


def _assemble(text: str, values: list[str]) -> str:
    """Put each value back in ``text``, encoded for its position."""
    out: list[str] = []
    literal: list[str] = []  # the template's own text so far (delimiters count only here)
    pos = 0
    for m in _MARKER.finditer(text):
        out.append(text[pos : m.start()])
        literal.append(text[pos : m.start()])
        value = values[int(m.group(1))]
        where = _position("".join(literal))
        if where in ("scheme", "authority"):
            if not _HOST_PART.fullmatch(value):
                raise UnsafeValue(f"a value in the URL's {where} holds more than [A-Za-z0-9-]")
            encoded = value
        else:
            encoded = encode_component(value)
        out.append(encoded)
        literal.append("x" * len(encoded))  # ordinary text, never a delimiter
        pos = m.end()
    out.append(text[pos:])
    url = "".join(out)
    if URL_MARK in url:
        raise UnsafeValue("marker characters in the template")
    path = urlsplit(url).path if is_http_url(url) else ""
    if any(unquote(segment) in (".", "..") for segment in path.split("/")):
        # A whole segment of dots (encoded or not) would climb the path.
        raise UnsafeValue("a path segment of dots")
    return url


def _render(template: Template, labels: Mapping[str, str], annotations: Mapping[str, str]) -> str:
    text, values = render_marked(template, labels=labels, annotations=annotations)
    return normalize_url(_assemble(text, values))


def resolve(
    catalog: RunbookCatalog, labels: Mapping[str, str], annotations: Mapping[str, str]
) -> Runbook:
    own = normalize_url(annotations.get(ANNOTATION, ""))
    if own and is_http_url(own):
        return Runbook(own, "annotation")
    candidates: list[tuple[Template, str]] = [
        (rule.template, rule.source) for rule in catalog.rules if matches_all(rule.matchers, labels)
    ]
    if catalog.default is not None:
        candidates.append((catalog.default, "runbooks.default"))
    for template, source in candidates:
        try:
            url = _render(template, labels, annotations)
        except Exception as exc:  # a template error must not sink ingest
            log.warning("runbook template failed", extra={"source": source, "error": str(exc)})
            continue
        if is_http_url(url):
            return Runbook(url, source)
    return NO_RUNBOOK
