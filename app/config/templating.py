"""The one Jinja2 environment for operator-written templates.

Operator templates (runbook URLs, notification titles and texts, the email
``html:``) run in a ``SandboxedEnvironment``; alert data only ever reaches
them as variables, never as template source, so a label value such as
``{{ 7*7 }}`` renders literally. Jinja2 ≥ 3.1.6 is
required (pyproject.toml): it closes the ``str.format`` escapes up to
CVE-2025-27516 (``|attr("format")``).

The sandbox stops attribute escapes but not a template that never ends, and
Jinja folds constant expressions while *compiling*, so ``{{ 9**(9**9) }}``
in a ``title:`` would hang ``check-config`` and every config load. On top of
the sandbox, and for every template of these environments:

* ``**``, ``*`` and ``+`` are evaluated at render time (never folded) and
  refuse integers over ``MAX_INT_BITS`` bits and sequences over
  ``MAX_REPEAT`` items (``*``) or ``MAX_OUTPUT`` characters (``+``);
* a render stops with :class:`TemplateLimitError` after ``MAX_OUTPUT``
  characters or ``RENDER_SECONDS``. The clock is read at each piece of output,
  each call (``range()`` included), attribute or item lookup and each
  intercepted operator, so nested ``range`` loops stop in time; a loop doing
  none of these (nested loops over one prebuilt list with an empty body) is
  not interrupted, and one ``range`` is capped at ``MAX_RANGE`` items;
* ``{{ }}`` prints data only: a function, class or module prints as nothing,
  not as its ``repr`` (no addresses or Python internals in a message).

Not bounded: a filter or string method asked for a huge width or
replacement (``|center(10**9)``, ``|indent``, ``.ljust``, ``|replace``)
allocates it before the output cap sees it. Templates come only from the
config file, i.e. from the operator.

Callers treat any exception from ``render`` as a failed template (the
notifiers fall back to their default text; a runbook rule is skipped).
"""

import contextvars
import operator as op
import time
import types
from collections.abc import Callable
from functools import lru_cache
from typing import Any

from jinja2 import Template, TemplateSyntaxError, Undefined
from jinja2.exceptions import SecurityError
from jinja2.runtime import Context
from jinja2.sandbox import MAX_RANGE, SandboxedEnvironment

__all__ = [
    "MAX_INT_BITS",
    "MAX_OUTPUT",
    "MAX_REPEAT",
    "RENDER_SECONDS",
    "TemplateLimitError",
    "TemplateSyntaxError",
    "html_env",
    "text_env",
]

MAX_OUTPUT = 16 * 1024 * 1024  # characters of one render; the built-in templates stay far below
MAX_REPEAT = MAX_RANGE  # items (or characters) one ``*`` may make of a sequence
MAX_INT_BITS = 16_384  # an integer result of ``**``/``*`` (Python prints at most ~4,300 digits)
RENDER_SECONDS = 2.0  # per render; a template that needs more is broken, not slow

_DEADLINE: contextvars.ContextVar[float | None] = contextvars.ContextVar(
    "alertrelay_template_deadline", default=None
)
_SIZED = (str, bytes, list, tuple)


class TemplateLimitError(SecurityError):
    """A template went over a size or time limit of this module."""


def _check_time() -> None:
    deadline = _DEADLINE.get()
    if deadline is not None and time.monotonic() > deadline:
        raise TemplateLimitError(f"template took longer than {RENDER_SECONDS:g}s to render")


def _check_size(value: Any) -> Any:
    if isinstance(value, _SIZED) and len(value) > MAX_OUTPUT:
        raise TemplateLimitError(f"template value longer than {MAX_OUTPUT} items")
    return value


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _bits(value: int) -> int:
    return max(abs(value).bit_length(), 1)


def _power(left: Any, right: Any) -> Any:
    if _is_int(left) and _is_int(right) and right > 0 and _bits(left) * right > MAX_INT_BITS:
        raise TemplateLimitError(f"{left} ** {right} would exceed {MAX_INT_BITS} bits")
    return op.pow(left, right)


def _times(left: Any, right: Any) -> Any:
    if _is_int(left) and _is_int(right):
        if _bits(left) + _bits(right) > MAX_INT_BITS:
            raise TemplateLimitError(f"a product would exceed {MAX_INT_BITS} bits")
    else:
        for seq, count in ((left, right), (right, left)):
            if isinstance(seq, _SIZED) and _is_int(count) and len(seq) * count > MAX_REPEAT:
                raise TemplateLimitError(f"repeating a sequence beyond {MAX_REPEAT} items")
    return op.mul(left, right)


def _plus(left: Any, right: Any) -> Any:
    if isinstance(left, _SIZED) and isinstance(right, _SIZED):
        if len(left) + len(right) > MAX_OUTPUT:
            raise TemplateLimitError(f"template value longer than {MAX_OUTPUT} items")
    elif _is_int(left) and _is_int(right) and max(_bits(left), _bits(right)) > MAX_INT_BITS:
        raise TemplateLimitError(f"a sum would exceed {MAX_INT_BITS} bits")
    return op.add(left, right)


_BOUNDED_BINOPS: dict[str, Callable[[Any, Any], Any]] = {"**": _power, "*": _times, "+": _plus}


def _data_only(value: Any) -> Any:
    """What ``{{ }}`` prints: data. A function, class or module prints as nothing."""
    if isinstance(value, Undefined):
        return value  # printed (or refused, for an unsafe attribute) as Jinja decides
    if callable(value) or isinstance(value, types.ModuleType):
        return ""
    return value


class BoundedTemplate(Template):
    """A template whose ``render`` stops at ``MAX_OUTPUT`` characters or ``RENDER_SECONDS``."""

    def render(self, *args: Any, **kwargs: Any) -> str:
        ctx = self.new_context(dict(*args, **kwargs))
        deadline = time.monotonic() + RENDER_SECONDS
        token = _DEADLINE.set(deadline)
        try:
            parts: list[str] = []
            size = 0
            for part in self.root_render_func(ctx):
                size += len(part)
                if size > MAX_OUTPUT:
                    raise TemplateLimitError(f"template output longer than {MAX_OUTPUT} characters")
                if time.monotonic() > deadline:
                    raise TemplateLimitError(
                        f"template took longer than {RENDER_SECONDS:g}s to render"
                    )
                parts.append(part)
            return "".join(parts)
        except Exception:
            self.environment.handle_exception()
        finally:
            _DEADLINE.reset(token)


class BoundedSandbox(SandboxedEnvironment):
    """``SandboxedEnvironment`` with the limits of this module's docstring."""

    intercepted_binops = frozenset(_BOUNDED_BINOPS)
    template_class = BoundedTemplate

    def call_binop(self, context: Context, operator: str, left: Any, right: Any) -> Any:
        _check_time()
        bounded = _BOUNDED_BINOPS.get(operator)
        if bounded is None:
            return super().call_binop(context, operator, left, right)
        return bounded(left, right)

    def call(self, context: Context, obj: Any, /, *args: Any, **kwargs: Any) -> Any:
        _check_time()
        return _check_size(super().call(context, obj, *args, **kwargs))

    def getattr(self, obj: Any, attribute: str) -> Any:
        _check_time()
        return _check_size(super().getattr(obj, attribute))

    def getitem(self, obj: Any, argument: Any) -> Any:
        _check_time()
        return _check_size(super().getitem(obj, argument))


@lru_cache(maxsize=1)
def text_env() -> BoundedSandbox:
    """Environment for plain-text output (URLs, chat text, subjects)."""
    return BoundedSandbox(autoescape=False, keep_trailing_newline=False, finalize=_data_only)


# While a URL template renders, each printed value is collected here and a
# marker printed in its place, so the caller can encode it for its position.
_URL_VALUES: contextvars.ContextVar[list[str] | None] = contextvars.ContextVar(
    "url_values", default=None
)
URL_MARK = "\x00"


def _url_marker(value: Any) -> Any:
    value = _data_only(value)
    values = _URL_VALUES.get()
    if values is None or isinstance(value, Undefined):
        return value
    values.append("" if value is None else str(value))
    return f"{URL_MARK}{len(values) - 1}{URL_MARK}"


def render_marked(template: Template, **context: Any) -> tuple[str, list[str]]:
    """Render a :func:`url_env` template: the text with a marker for every
    printed value (``\\x00<index>\\x00``), and the values."""
    values: list[str] = []
    token = _URL_VALUES.set(values)
    try:
        return template.render(**context), values
    finally:
        _URL_VALUES.reset(token)


@lru_cache(maxsize=1)
def url_env() -> BoundedSandbox:
    """Environment for URL templates (runbooks): see :func:`render_marked`."""
    return BoundedSandbox(autoescape=False, keep_trailing_newline=False, finalize=_url_marker)


@lru_cache(maxsize=1)
def html_env() -> BoundedSandbox:
    """Environment for HTML output (email bodies, the status page): autoescaped."""
    return BoundedSandbox(autoescape=True, keep_trailing_newline=False, finalize=_data_only)
