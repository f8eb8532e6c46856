"""The acknowledge link's token (app/core/acklink.py) and the config that turns links on."""

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from app.config.model import ConfigError, parse_config
from app.core.acklink import LinkClaims, LinkError, ack_url, make_token, read_token

SECRET = b"0123456789abcdef0123456789abcdef"
T0 = datetime(2026, 3, 1, 12, 0, 0, 123456, tzinfo=UTC)
CLAIMS = LinkClaims("00000000000000aa", T0, "team-page", T0 + timedelta(days=7))
ROUTE = "route: {receiver: r}\nreceivers: [{name: r, log_configs: [{}]}]\n"


def test_a_token_reads_back_its_claims_and_is_url_safe() -> None:
    token = make_token(SECRET, CLAIMS)
    # The expiry is kept to the second (a shorter link); the occurrence exactly.
    assert read_token(SECRET, token, T0) == LinkClaims(
        CLAIMS.fingerprint, T0, CLAIMS.receiver, CLAIMS.expires.replace(microsecond=0)
    )
    assert all(c.isalnum() or c in "-_." for c in token)
    assert ack_url("https://ar.example.com/", token) == f"https://ar.example.com/ack/{token}"


@pytest.mark.parametrize(
    "damage",
    [
        lambda t: t[:-1] + ("A" if t[-1] != "A" else "B"),  # the signature
        lambda t: ("X" if t[0] != "X" else "Y") + t[1:],  # the claims
        lambda t: t.replace(".", ""),
        lambda t: t + ".x",
        lambda t: "",
        lambda t: "a" * 2000,
        lambda t: "!!!.???",
    ],
)
def test_a_damaged_token_is_invalid(damage: object) -> None:
    token = make_token(SECRET, CLAIMS)
    with pytest.raises(LinkError) as info:
        read_token(SECRET, damage(token), T0)  # type: ignore[operator]
    assert info.value.reason == "invalid"


def test_another_secret_or_another_receiver_does_not_verify() -> None:
    token = make_token(SECRET, CLAIMS)
    with pytest.raises(LinkError):
        read_token(b"another-secret-0123456789abcdef", token, T0)
    # Claims swapped between two tokens (another receiver's) keep their own MAC only.
    other = make_token(SECRET, LinkClaims("00000000000000aa", T0, "team-chat", CLAIMS.expires))
    forged = other.split(".")[0] + "." + token.split(".")[1]
    with pytest.raises(LinkError):
        read_token(SECRET, forged, T0)


def test_a_token_expires() -> None:
    token = make_token(SECRET, CLAIMS)
    last = CLAIMS.expires.replace(microsecond=0) - timedelta(microseconds=1)
    assert read_token(SECRET, token, last).receiver == "team-page"
    with pytest.raises(LinkError) as info:
        read_token(SECRET, token, CLAIMS.expires)
    assert info.value.reason == "expired"


def test_links_need_the_url_and_the_secret(tmp_path: Path) -> None:
    assert parse_config(ROUTE, "c").config.ack_links() is None
    only_secret = "auth: {link_secret: 0123456789abcdef}\n" + ROUTE
    assert parse_config(only_secret, "c").config.ack_links() is None
    secret_file = tmp_path / "link"
    secret_file.write_text("from-a-file-0123456789\n")
    text = (
        "external_url: https://ar.example.com/\n"
        f"auth: {{link_secret_file: {secret_file}, link_ttl: 1d}}\n" + ROUTE
    )
    config = parse_config(text, "c").config
    assert config.ack_links() == ("https://ar.example.com", b"from-a-file-0123456789")
    assert config.auth is not None and config.auth.link_ttl == timedelta(days=1)
    assert "from-a-file" not in repr(config)
    # The top-level URL is PagerDuty's client_url too; global.external_url still works.
    assert config.global_.external_url == "https://ar.example.com/"
    old = "global: {external_url: 'https://old.example.com'}\n" + only_secret
    assert parse_config(old, "c").config.ack_links() == (
        "https://old.example.com",
        b"0123456789abcdef",
    )


@pytest.mark.parametrize(
    ("text", "error"),
    [
        ("auth: {link_secret: short}\n", "auth.link_secret: too short"),
        ("auth: {link_secret: ''}\n", "auth.link_secret: is empty"),
        ("auth: {link_secret: 0123456789abcdef, link_ttl: 10s}\n", "auth.link_ttl: must be"),
        ("external_url: ftp://x\n", "external_url"),
    ],
)
def test_bad_link_settings_are_config_errors(text: str, error: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_config(text + ROUTE, "c")
    assert any(error in e for e in info.value.errors), info.value.errors
