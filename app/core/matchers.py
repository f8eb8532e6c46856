"""Label matchers in Alertmanager's syntax: ``=``, ``!=``, ``=~``, ``!~``.

Regexes are anchored at both ends as in Alertmanager (``^(?:re)$``), and a
label that is absent matches as the empty string, so ``severity!="critical"``
matches an alert with no severity label at all.
"""

import enum
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field


class MatchType(enum.Enum):
    EQUAL = "="
    NOT_EQUAL = "!="
    REGEX = "=~"
    NOT_REGEX = "!~"


class MatcherError(ValueError):
    """A matcher string that cannot be parsed or compiled."""


@dataclass(frozen=True)
class Matcher:
    name: str
    type: MatchType
    value: str
    _regex: re.Pattern[str] | None = field(default=None, compare=False, repr=False)

    @classmethod
    def create(cls, name: str, type_: MatchType, value: str) -> "Matcher":
        regex = None
        if type_ in (MatchType.REGEX, MatchType.NOT_REGEX):
            try:
                regex = re.compile(value)
            except re.error as exc:
                raise MatcherError(f"invalid regular expression {value!r}: {exc}") from None
        return cls(name, type_, value, regex)

    def matches(self, labels: Mapping[str, str]) -> bool:
        actual = labels.get(self.name, "")
        if self.type is MatchType.EQUAL:
            return actual == self.value
        if self.type is MatchType.NOT_EQUAL:
            return actual != self.value
        assert self._regex is not None
        # fullmatch anchors both ends without Python's "$ before a final
        # newline" quirk, which Go's RE2 does not have.
        found = self._regex.fullmatch(actual) is not None
        return found if self.type is MatchType.REGEX else not found

    def __str__(self) -> str:
        escaped = self.value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
        return f'{self.name}{self.type.value}"{escaped}"'


# Classic label names; quoted names cover Alertmanager's UTF-8 mode.
_MATCHER_RE = re.compile(
    r'^\s*(?P<name>[A-Za-z_:][A-Za-z0-9_:]*|"(?:[^"\\]|\\.)*")\s*'
    r"(?P<op>=~|!~|!=|=)\s*(?P<value>.*?)\s*$",
    re.DOTALL,
)
_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", '"': '"', "\\": "\\"}


def _unquote(text: str) -> str:
    inner = text[1:-1]
    out: list[str] = []
    i = 0
    while i < len(inner):
        ch = inner[i]
        if ch == "\\":
            if i + 1 >= len(inner) or inner[i + 1] not in _ESCAPES:
                raise MatcherError(f"invalid escape in {text}")
            out.append(_ESCAPES[inner[i + 1]])
            i += 2
            continue
        if ch == '"':
            raise MatcherError(f"unescaped quote in {text}")
        out.append(ch)
        i += 1
    return "".join(out)


def parse_matcher(text: str) -> Matcher:
    """Parse one matcher such as ``severity=~"crit.*"``."""
    m = _MATCHER_RE.match(text)
    if m is None:
        raise MatcherError(f"bad matcher {text!r}: expected name, one of = != =~ !~, and a value")
    name = m.group("name")
    if name.startswith('"'):
        name = _unquote(name)
    value = m.group("value")
    if value.startswith('"'):
        if len(value) < 2 or not value.endswith('"'):
            raise MatcherError(f"bad matcher {text!r}: unterminated quoted value")
        value = _unquote(value)
    elif any(c in value for c in '"{}'):
        raise MatcherError(f"bad matcher {text!r}: quote the value")
    return Matcher.create(name, MatchType(m.group("op")), value)


def _split_top_level(text: str) -> list[str]:
    parts: list[str] = []
    current: list[str] = []
    in_quotes = False
    escaped = False
    for ch in text:
        if escaped:
            current.append(ch)
            escaped = False
            continue
        if ch == "\\" and in_quotes:
            current.append(ch)
            escaped = True
            continue
        if ch == '"':
            in_quotes = not in_quotes
        if ch == "," and not in_quotes:
            parts.append("".join(current))
            current = []
            continue
        current.append(ch)
    if in_quotes:
        raise MatcherError(f"unterminated quote in {text!r}")
    parts.append("".join(current))
    return parts


def parse_matchers(text: str) -> list[Matcher]:
    """Parse one config entry, which may hold ``{a="b", c=~"d"}`` or a single matcher."""
    body = text.strip()
    if body.startswith("{"):
        if not body.endswith("}"):
            raise MatcherError(f"bad matchers {text!r}: missing closing brace")
        body = body[1:-1]
    pieces = [p for p in _split_top_level(body) if p.strip()]
    if not pieces:
        raise MatcherError(f"bad matchers {text!r}: empty")
    return [parse_matcher(p) for p in pieces]


def matches_all(matchers: Iterable[Matcher], labels: Mapping[str, str]) -> bool:
    return all(m.matches(labels) for m in matchers)
