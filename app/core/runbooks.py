"""Which runbook link an alert gets.

Order: the alert's own ``runbook_url`` annotation; else the first
``runbooks.rules`` entry whose matchers match; else ``runbooks.default``;
else none. Only absolute http(s) URLs are ever returned: a link that
renders to anything else is skipped, so ``javascript:`` or a relative path
can never reach a notification.
"""

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import quote, urlsplit

from jinja2 import Template

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


def _render(template: Template, labels: Mapping[str, str], annotations: Mapping[str, str]) -> str:
    return normalize_url(template.render(labels=labels, annotations=annotations))


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
