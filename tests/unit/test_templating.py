"""Operator templates cannot escape the sandbox or hang a worker.

The escapes are the published payload styles: ``str.format`` reaching
attributes (CVE-2016-10745), ``str.format_map`` (CVE-2019-10906), an indirect
call of ``str.format`` (CVE-2024-56326) and ``|attr("format")``
(CVE-2025-27516), plus the classic ``__class__``/``__globals__`` walks. Each
is refused with ``SecurityError`` or prints nothing; through the message
model the override then falls back to the default, and no Python internals
or environment secrets reach the output.
"""

import logging
import re
import time
import tomllib
from importlib.metadata import version
from pathlib import Path
from typing import Any

import pytest
from jinja2.exceptions import SecurityError
from jinja2.sandbox import SandboxedEnvironment

from app.config.model import parse_config
from app.config.templating import (
    MAX_OUTPUT,
    MAX_REPEAT,
    RENDER_SECONDS,
    TemplateLimitError,
    html_env,
    text_env,
)
from app.core.message import Message, build_message, compile_template, default_title
from tests.helpers import notice_payload

ROOT = Path(__file__).resolve().parents[2]
CANARY = "canary-secret-0f9e8d7c6b5a"
ENVS = pytest.mark.parametrize("env", [text_env, html_env], ids=["text", "html"])

# (template, what the sandbox does): "raises" SecurityError, or prints "nothing".
ESCAPES = {
    "CVE-2016-10745 str.format": ('{{ "{0.__class__.__mro__}".format("") }}', "raises"),
    "CVE-2016-10745 globals": ('{{ "{0.__init__.__globals__}".format(cycler) }}', "raises"),
    "CVE-2019-10906 format_map": ('{{ "{x.__class__.__mro__}".format_map({"x": ""}) }}', "raises"),
    "CVE-2019-10906 format_map, one level": (
        '{{ "{x.__class__}".format_map({"x": ""}) }}',
        "nothing",
    ),
    "CVE-2024-56326 stored format": (
        '{% set f = "{0.__class__.__mro__}".format %}{{ f("") }}',
        "raises",
    ),
    "CVE-2024-56326 format in a dict": (
        '{{ ({"f": "{0.__class__.__mro__}".format}).f("") }}',
        "raises",
    ),
    "CVE-2024-56326 format via map": (
        '{{ (["{0.__class__.__mro__}"]|map(attribute="format")|first)("") }}',
        "raises",
    ),
    "CVE-2025-27516 attr format": ('{{ "{0.__class__.__mro__}"|attr("format")("") }}', "raises"),
    "CVE-2025-27516 attr format_map": (
        '{{ ("{x.__class__.__mro__}"|attr("format_map"))({"x": ""}) }}',
        "raises",
    ),
    "CVE-2025-27516 attr via map": (
        '{{ (["{0.__class__.__mro__}"]|map("attr", "format")|first)("") }}',
        "raises",
    ),
    "mro": ("{{ ''.__class__.__mro__ }}", "raises"),
    "mro subclasses": ("{{ ''.__class__.__mro__[1].__subclasses__() }}", "raises"),
    "cycler globals": ("{{ cycler.__init__.__globals__ }}", "raises"),
    "cycler globals os": ("{{ cycler.__init__.__globals__.os.environ }}", "raises"),
    "joiner globals": ("{{ joiner.__init__.__globals__ }}", "raises"),
    "namespace globals": ("{{ namespace.__init__.__globals__ }}", "raises"),
    "lipsum globals": ("{{ lipsum.__globals__ }}", "nothing"),
    "lipsum globals os": ("{{ lipsum.__globals__.os.environ }}", "raises"),
    "attr class": ("{{ ''|attr('__class__') }}", "nothing"),
    "self context": ("{{ self._TemplateReference__context }}", "nothing"),
    "a function's repr": (
        '{{ ["x"]|map("attr", "format")|first }}{{ lipsum }}{{ range }}{{ labels.items }}',
        "nothing",
    ),
}

# What a leak would look like: reprs, addresses, the environment; in a message, dunders too.
LEAK = re.compile(r"<class|<function|<built-in|<module|<bound|0x[0-9a-f]{6,}|os\.environ|" + CANARY)
OUTPUT_LEAK = re.compile(r"__|" + LEAK.pattern)


def payload(**over: Any) -> dict[str, Any]:
    return notice_payload(
        **{
            "annotations": {"summary": "disk almost full"},
            "generator_url": "http://prometheus:9090/graph",
            "group_key": "",
            **over,
        }
    )


def message(title: str | None = None, text: str | None = None, **over: Any) -> Message:
    return build_message(
        payload(**over),
        notification_id=1,
        idempotency_key="k" * 64,
        receiver="team",
        attempt=1,
        title=compile_template(title),
        text=compile_template(text),
    )


def test_jinja2_is_at_least_3_1_6_and_pinned_so() -> None:
    major, minor, patch = (int(p) for p in version("jinja2").split(".")[:3])
    assert (major, minor, patch) >= (3, 1, 6)
    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    assert "jinja2>=3.1.6,<4" in deps
    assert isinstance(text_env(), SandboxedEnvironment) and isinstance(
        html_env(), SandboxedEnvironment
    )


@ENVS
@pytest.mark.parametrize("case", list(ESCAPES))
def test_sandbox_escapes_are_refused(case: str, env: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ALERTRELAY_TEST_CANARY", CANARY)
    source, outcome = ESCAPES[case]
    template = env().from_string(source)
    if outcome == "raises":
        with pytest.raises(SecurityError) as info:
            template.render(labels={"alertname": "DiskFull"})
        assert CANARY not in str(info.value)
    else:
        assert template.render(labels={"alertname": "DiskFull"}) == ""


@pytest.mark.parametrize("case", list(ESCAPES))
def test_an_escaping_override_falls_back_to_the_default(
    case: str, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("ALERTRELAY_TEST_CANARY", CANARY)
    source, outcome = ESCAPES[case]
    with caplog.at_level(logging.WARNING, logger="app.core.message"):
        m = message(title=source, text=f"before {source} after")
    assert m.title == default_title(m) == "[FIRING] DiskFull (critical): disk almost full"
    if outcome == "raises":
        assert [r.getMessage() for r in caplog.records] == ["template failed, default used"] * 2
        assert "Labels: instance=db-1, severity=critical" in m.text  # the default text
    else:
        assert m.text == "before  after"  # the escape printed nothing
    for output in (m.title, m.text):
        assert not OUTPUT_LEAK.search(output), output
    # The log says which attribute was refused (the operator's own template), never a value.
    for error in (str(getattr(r, "error", "")) for r in caplog.records):
        assert error.endswith("is unsafe.") and not LEAK.search(error), error


def test_label_values_stay_data_inside_an_operator_template() -> None:
    labels = {
        "alertname": "{{ 7*7 }}",
        "loop": "{% for x in range(10**9) %}x{% endfor %}",
        "mro": "{{ ''.__class__ }}",
    }
    started = time.monotonic()
    m = message(
        title="{{ labels.alertname }} | {{ labels.loop }}", text="{{ labels.mro }}", labels=labels
    )
    assert time.monotonic() - started < 1
    assert m.title == "{{ 7*7 }} | {% for x in range(10**9) %}x{% endfor %}"
    assert m.text == "{{ ''.__class__ }}"


@pytest.mark.parametrize(
    ("source", "error", "said"),
    [
        # The sandbox caps one range at MAX_RANGE (100,000) items.
        ("{% for i in range(10**8) %}x{% endfor %}", OverflowError, "MAX_RANGE"),
        ("{% for i in range(10**9) %}{{ i }}{% endfor %}", OverflowError, "MAX_RANGE"),
        # Power and repetition are bounded before Python computes them.
        ("{{ 9**(9**9) }}", TemplateLimitError, "would exceed"),
        ("{{ 'x' * 10**7 }}", TemplateLimitError, "beyond 100000 items"),
        ("{{ ('x' * 100000) * 100000 }}", TemplateLimitError, "beyond 100000 items"),
        ("{{ [0] * (10**9) }}", TemplateLimitError, "beyond 100000 items"),
        # Output and values are capped at MAX_OUTPUT characters.
        (
            "{% for i in range(100000) %}{{ 'x' * 100000 }}{% endfor %}",
            TemplateLimitError,
            "output longer than",
        ),
        (
            "{% set ns = namespace(v='x') %}{% for i in range(100) %}{% set ns.v = ns.v ~ ns.v %}{% endfor %}",
            TemplateLimitError,
            "value longer than",
        ),
    ],
)
def test_resource_bombs_are_refused_quickly(source: str, error: type[Exception], said: str) -> None:
    started = time.monotonic()
    template = text_env().from_string(source)  # compiling folds nothing that could hang
    with pytest.raises(error, match=said):
        template.render()
    assert time.monotonic() - started < 1.5


def test_ordinary_arithmetic_still_works() -> None:
    source = "{{ 2**64 }} {{ '-' * 20 }} {{ 3 * [1]|length }} {{ 1 + 2 }} {{ 'a' + 'b' }} {{ [1] * 3 }} {{ 7 // 2 }}"
    out = text_env().from_string(source).render()
    assert out == f"18446744073709551616 {'-' * 20} 3 3 ab [1, 1, 1] 3"
    assert text_env().from_string("{{ 'x' * n }}").render(n=MAX_REPEAT) == "x" * MAX_REPEAT


def test_a_config_with_a_bomb_loads_at_once() -> None:
    """Jinja folds constants while compiling: unbounded, ``9**(9**9)`` would hang check-config."""
    text = 'route: {receiver: r}\nreceivers: [{name: r, log_configs: [{title: "{{ 9**(9**9) }}", text: "{{ \'x\' * 10**10 }}"}]}]\n'
    started = time.monotonic()
    loaded = parse_config(text, "t.yml", {})
    assert time.monotonic() - started < 2
    integration = loaded.config.receivers[0].log_configs[0]
    m = message(title=integration.title, text=integration.text)
    assert (
        m.title == "[FIRING] DiskFull (critical): disk almost full"
    )  # refused at render, default used
    assert m.text.startswith("disk almost full")


def test_a_render_that_runs_too_long_is_stopped() -> None:
    # 10^10 iterations; each inner range() is a sandboxed call, where the clock is read.
    source = "{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}"
    template = text_env().from_string(source)
    started = time.monotonic()
    with pytest.raises(TemplateLimitError, match=f"longer than {RENDER_SECONDS:g}s"):
        template.render()
    assert RENDER_SECONDS <= time.monotonic() - started < RENDER_SECONDS * 5


def test_a_title_that_runs_too_long_falls_back_to_the_default() -> None:
    slow = "{% for i in range(100000) %}{% for j in range(100000) %}{{ labels.alertname[:0] }}{% endfor %}{% endfor %}"
    started = time.monotonic()
    m = message(title=slow)
    assert time.monotonic() - started < RENDER_SECONDS * 5
    assert m.title == "[FIRING] DiskFull (critical): disk almost full"


def test_the_output_cap_leaves_room_for_large_alerts() -> None:
    big = "y" * (MAX_OUTPUT // 2)
    out = html_env().from_string("<p>{{ description }}</p>").render(description=big)
    assert out == f"<p>{big}</p>"
