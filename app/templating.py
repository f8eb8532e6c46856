"""The one Jinja2 environment for operator-written templates.

Operator templates (runbook URLs, notification titles and texts) run in a
``SandboxedEnvironment``; alert data only ever reaches them as variables,
never as template source, so a label value such as ``{{ 7*7 }}`` renders
literally (reliability.md SEC-10).
"""

from functools import lru_cache

from jinja2 import TemplateSyntaxError
from jinja2.sandbox import SandboxedEnvironment

__all__ = ["TemplateSyntaxError", "html_env", "text_env"]


@lru_cache(maxsize=1)
def text_env() -> SandboxedEnvironment:
    """Environment for plain-text output (URLs, chat text, subjects)."""
    return SandboxedEnvironment(autoescape=False, keep_trailing_newline=False)


@lru_cache(maxsize=1)
def html_env() -> SandboxedEnvironment:
    """Environment for HTML output (email bodies, the status page): autoescaped."""
    return SandboxedEnvironment(autoescape=True, keep_trailing_newline=False)
