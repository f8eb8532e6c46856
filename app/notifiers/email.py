"""Email over SMTP with aiosmtplib.

The connection follows Alertmanager's rules, with one stricter one:

* implicit TLS (TLS from the first byte) with ``force_implicit_tls: true``,
  or when that is unset and the port is 465;
* otherwise STARTTLS is *required* unless ``require_tls: false``: a server
  that does not offer it fails the attempt (retryable), and nothing is sent
  in the clear. aiosmtplib's default would upgrade only when offered
  (opportunistic), which a man in the middle defeats by hiding the offer;
* credentials are never sent over a plaintext connection, whatever the
  settings (Alertmanager would send LOGIN in the clear);
* certificates are always verified; ``tls_ca_file`` trusts a private CA
  (instead of the system store).

The message is ``multipart/alternative``: ``text/plain`` first, then the
HTML part (the preferred alternative goes last, RFC 2046 §5.1.4), both UTF-8
quoted-printable. Its ``Message-ID`` comes from the notification's
idempotency key, so a retry after a connection dropped between DATA and the
server's answer is the same message to a mail system that deduplicates, and
recognisably the same to a human. Anything that reaches a header is
stripped of control characters first: a label cannot add a
``Bcc:``.
"""

import base64
import contextlib
import email.policy
import logging
import ssl
from dataclasses import dataclass
from email.message import EmailMessage
from email.utils import format_datetime
from typing import TYPE_CHECKING, Any, ClassVar, Literal

import aiosmtplib
from pydantic import Field, SecretStr, model_validator

from app.config.fields import FieldError, parse_smarthost, secret_from
from app.config.templating import TemplateSyntaxError, html_env
from app.core.group_text import group_text
from app.core.message import Message, cut, default_text
from app.core.ratelimit import RateLimit
from app.notifiers.base import (
    BuildContext,
    DeliveryError,
    IntegrationConfig,
    Prepared,
    destination_id,
    redact,
)
from app.notifiers.email_body import (
    default_html,
    html_context,
    message_id,
    message_key,
    thread_root,
)
from app.notifiers.email_headers import (
    check_headers,
    header_safe,
    parse_recipients,
    parse_sender,
)

if TYPE_CHECKING:
    from app.config.globals import GlobalConfig

log = logging.getLogger(__name__)

SUBJECT_LIMIT = 255  # characters; clients show less, and folding keeps lines short anyway
TEXT_LIMIT = 100_000  # characters of the text part
IO_TIMEOUT_S = 10.0  # per SMTP operation; the attempt's total deadline is the caller's


class EmailConfig(IntegrationConfig):
    grouping_default: ClassVar[Literal["group", "alert"]] = "group"
    send_resolved_default: ClassVar[bool] = False
    secret_fields: ClassVar[tuple[str, ...]] = ("auth_password",)

    to: str
    from_: str | None = Field(default=None, alias="from")  # default: global.smtp_from
    smarthost: str | None = None  # default: global.smtp_smarthost
    hello: str | None = None
    auth_username: str | None = None
    auth_password: SecretStr | None = None
    require_tls: bool | None = None  # default: global.smtp_require_tls (true)
    force_implicit_tls: bool | None = None  # default: true on port 465
    tls_ca_file: str | None = None
    html: str | None = None  # Jinja2 override of the HTML body
    headers: dict[str, str] = {}

    def cross_check(self, g: "GlobalConfig") -> list[tuple[str, str]]:
        return _email_cross_check(self, g)

    @model_validator(mode="before")
    @classmethod
    def _secrets(cls, data: Any) -> Any:
        if isinstance(data, dict):
            data = secret_from(data, "auth_password", required=False)
        return data

    @model_validator(mode="after")
    def _checks(self) -> "EmailConfig":
        if not [a for a in self.to.split(",") if a.strip()]:
            raise FieldError("to", "needs at least one address")
        try:
            parse_recipients(self.to)
        except ValueError as exc:
            raise FieldError("to", str(exc)) from None
        if self.from_ is not None:
            try:
                parse_sender(self.from_)
            except ValueError as exc:
                raise FieldError("from", str(exc)) from None
        if self.smarthost is not None:
            parse_smarthost(self.smarthost, "smarthost")
        if self.hello is not None and (
            not self.hello.strip() or any(ch.isspace() or not ch.isprintable() for ch in self.hello)
        ):
            raise FieldError("hello", "must be a host name (no spaces)")
        if self.auth_username and self.auth_password is None:
            raise FieldError("auth_password", "required when auth_username is set")
        for name in self.headers:
            if not name or any(c in name for c in ":\r\n ") or not name.isascii():
                raise FieldError("headers", f"invalid header name {name!r}")
        check_headers(self.headers)
        if self.html:
            try:
                html_env().from_string(self.html)
            except TemplateSyntaxError as exc:
                raise FieldError(
                    "html", f"template error: {exc.message} (line {exc.lineno})"
                ) from None
        if self.tls_ca_file is not None:
            try:
                ssl.create_default_context(cafile=self.tls_ca_file)
            except (OSError, ssl.SSLError) as exc:
                raise FieldError("tls_ca_file", f"cannot load: {exc}") from None
        return self


@dataclass(frozen=True)
class Connection:
    """Where and how one ``email_configs`` entry connects, its defaults applied."""

    host: str
    port: int
    implicit_tls: bool
    starttls: bool  # required STARTTLS on a plain connection
    username: str | None
    password: str | None

    @property
    def plaintext_auth(self) -> bool:
        """Credentials are set but the connection would never be encrypted."""
        return self.username is not None and not (self.implicit_tls or self.starttls)


def _email_cross_check(config: EmailConfig, g: "GlobalConfig") -> list[tuple[str, str]]:
    problems: list[tuple[str, str]] = []
    if config.smarthost is None and g.smtp_smarthost is None:
        problems.append(("smarthost", "required (or set global.smtp_smarthost)"))
    if config.from_ is None and g.smtp_from is None:
        problems.append(("from", "required (or set global.smtp_from)"))
    if (config.smarthost or g.smtp_smarthost) and connection(config, g).plaintext_auth:
        problems.append(
            (
                "require_tls",
                "credentials are never sent without TLS; "
                "keep require_tls true or use implicit TLS (port 465)",
            )
        )
    return problems


def connection(config: EmailConfig, g: "GlobalConfig") -> Connection:
    """The connection settings of ``config``, ``global.smtp_*`` filling the gaps."""
    smarthost = config.smarthost or g.smtp_smarthost
    if smarthost is None:
        raise ValueError("email: smarthost is required (or global.smtp_smarthost)")
    host, port = parse_smarthost(smarthost, "smarthost")
    implicit = config.force_implicit_tls if config.force_implicit_tls is not None else port == 465
    require_tls = config.require_tls if config.require_tls is not None else g.smtp_require_tls
    username = config.auth_username or g.smtp_auth_username
    password = config.auth_password or g.smtp_auth_password
    return Connection(
        host=host,
        port=port,
        implicit_tls=implicit,
        starttls=require_tls and not implicit,
        username=username or None,
        password=password.get_secret_value() if password is not None else None,
    )


class EmailNotifier:
    def __init__(self, config: EmailConfig, ctx: BuildContext) -> None:
        g = ctx.global_config
        conn = connection(config, g)
        sender = config.from_ or g.smtp_from
        if sender is None:
            raise ValueError("email: from is required (or global.smtp_from)")
        self._host, self._port = conn.host, conn.port
        self._implicit_tls, self._starttls = conn.implicit_tls, conn.starttls
        self._username, self._password = conn.username, conn.password
        self._from = header_safe(sender)
        self._sender = parse_sender(sender)
        self._to = header_safe(config.to)
        self._recipients = parse_recipients(config.to)
        self._hello = config.hello or g.smtp_hello
        # Verified always; a private CA replaces the system store when given.
        self._tls = ssl.create_default_context(cafile=config.tls_ca_file)
        self._headers = [(name, header_safe(value)) for name, value in config.headers.items()]
        self._html = html_env().from_string(config.html) if config.html else None
        self._clock = ctx.clock
        timeout = config.delivery.timeout if config.delivery is not None else None
        self._io_timeout = min(IO_TIMEOUT_S, timeout.total_seconds()) if timeout else IO_TIMEOUT_S
        # Addresses outside ASCII need SMTPUTF8 (RFC 6531) on the envelope and in headers.
        self._utf8 = not (self._sender + "".join(self._recipients)).isascii()
        self._policy = email.policy.SMTPUTF8 if self._utf8 else email.policy.SMTP
        self._secrets = self._secret_forms()

    def _secret_forms(self) -> list[str]:
        if not self._password:
            return []
        user = (self._username or "").encode()
        password = self._password.encode()
        # A server that echoes a failed AUTH line echoes these encodings.
        return [
            self._password,
            base64.b64encode(password).decode(),
            base64.b64encode(b"\0" + user + b"\0" + password).decode(),
        ]

    def destination(self) -> str:
        return destination_id("email", f"{self._host}:{self._port}", self._sender)

    def secrets(self) -> list[str]:
        return list(self._secrets)

    def rate_limit(self) -> RateLimit:
        # SMTP servers publish no one limit; a relay that throttles answers
        # 421/451. A modest rate per smarthost and sender keeps a storm of
        # alerts from tripping that.
        return RateLimit(per_second=5.0, burst=10)

    # ------------------------------------------------------------ the message

    def text_body(self, m: Message) -> str:
        text = m.text
        if m.group is not None and text == default_text(m):
            # The list gives way alert by alert, so its "and N more" stays.
            text = group_text(m.group, limit=TEXT_LIMIT - 100)
        if m.runbook_url and m.runbook_url not in text:
            text = f"{text}\n\nRunbook: {m.runbook_url}" if text else f"Runbook: {m.runbook_url}"
        if m.ack_url:
            text = f"{text}\n\nAcknowledge: {m.ack_url}" if text else f"Acknowledge: {m.ack_url}"
        return cut(text, TEXT_LIMIT) + "\n"

    def html_body(self, m: Message) -> str:
        context = html_context(m)
        if self._html is not None:
            try:
                return self._html.render(**context)
            except Exception as exc:
                # A broken override must not lose the notification.
                log.warning(
                    "template failed, default used",
                    extra={"template": "email.html", "error": str(exc)[:200]},
                )
        return default_html().render(**context)

    def build_message(self, m: Message) -> EmailMessage:
        """The message for ``m``: headers, then text/plain and text/html alternatives."""
        msg = EmailMessage(policy=self._policy)
        msg["From"] = self._from
        msg["To"] = self._to
        msg["Subject"] = cut(header_safe(m.title), SUBJECT_LIMIT)
        msg["Date"] = format_datetime(self._clock.now())
        msg["Message-ID"] = message_id(m)
        root = thread_root(m)
        if root is not None:  # later mails of a group occurrence answer its first
            msg["In-Reply-To"] = root
            msg["References"] = root
        for name, value in self._headers:
            del msg[name]  # a configured Subject/From/To replaces the default
            msg[name] = value
        msg.set_content(self.text_body(m), charset="utf-8", cte="quoted-printable")
        msg.add_alternative(
            self.html_body(m), subtype="html", charset="utf-8", cte="quoted-printable"
        )
        # A fixed boundary makes every attempt the same bytes (Date aside) and
        # prepare() show exactly what is sent. "=_" never occurs in
        # quoted-printable text (it writes "=" as "=3D"), so it cannot collide.
        msg.set_boundary(f"=_alertrelay_{message_key(m)}")
        for part in msg.iter_parts():
            del part["MIME-Version"]  # EmailMessage adds it to parts too; it belongs on top
        return msg

    def prepare(self, message: Message) -> Prepared:
        msg = self.build_message(message)
        headers = {name: str(value) for name, value in msg.items()}
        return Prepared(
            "SMTP", f"smtp://{self._host}:{self._port}", headers, msg.as_bytes(policy=self._policy)
        )

    # -------------------------------------------------------------- sending

    async def send(self, message: Message) -> str | None:
        """Send over one SMTP session; every step is bounded by the caller's deadline."""
        body = self.prepare(message).body
        smtp = aiosmtplib.SMTP(
            hostname=self._host,
            port=self._port,
            local_hostname=self._hello,
            use_tls=self._implicit_tls,
            # STARTTLS is run below by hand, so "not offered" is a clear,
            # retryable failure and never a silent fallback to plaintext.
            start_tls=False,
            tls_context=self._tls,
            timeout=self._io_timeout,
        )
        try:
            await smtp.connect()
            if self._starttls:
                await smtp.ehlo()
                if not smtp.supports_extension("starttls"):
                    raise DeliveryError(
                        "email: the server does not offer STARTTLS and require_tls is true",
                        retryable=True,
                    )
                await smtp.starttls()
            if self._username is not None and self._password is not None:
                await self._login(smtp)
            refused, _ = await smtp.sendmail(
                self._sender,
                self._recipients,
                body,
                mail_options=["SMTPUTF8"] if self._utf8 else None,
            )
            # The server has the message: a failing QUIT must not send it twice.
            with contextlib.suppress(aiosmtplib.SMTPException, OSError):
                await smtp.quit()
        except DeliveryError:
            raise
        except Exception as exc:
            raise self._error(exc) from None
        finally:
            smtp.close()
        if refused:
            # Some recipients took it; a retry would send them a second copy.
            listed = ", ".join(f"{addr} ({r.code})" for addr, r in sorted(refused.items()))
            return self._clean(f"refused by the server for {listed}")
        return None

    async def _login(self, smtp: aiosmtplib.SMTP) -> None:
        assert self._username is not None and self._password is not None
        if smtp.get_transport_info("sslcontext") is None:
            raise DeliveryError(
                "email: refusing to send credentials over a plaintext connection "
                "(use STARTTLS, require_tls: true, or implicit TLS)",
                retryable=False,
            )
        if smtp.is_ehlo_or_helo_needed:
            await smtp.ehlo()
        # As Alertmanager: authenticate only when the server asks for it.
        if smtp.supports_extension("auth"):
            await smtp.login(self._username, self._password)

    def _clean(self, text: str) -> str:
        """One printable line, secrets redacted (before the cut, which could split one)."""
        text = "".join(ch if ch.isprintable() else " " for ch in text)
        return cut(redact(" ".join(text.split()), self._secrets), 300)

    def _error(self, exc: BaseException) -> DeliveryError:
        """4xx replies and transport failures are retryable; 5xx replies are dead."""
        if isinstance(exc, aiosmtplib.SMTPRecipientsRefused):
            codes = [r.code for r in exc.recipients]
            detail = "; ".join(f"{r.recipient}: {r.code} {r.message}" for r in exc.recipients)
            # One transient refusal is worth another attempt; only 5xx for all is final.
            retryable = not codes or any(not 500 <= c < 600 for c in codes)
            return DeliveryError(
                self._clean(f"email: every recipient refused: {detail}"),
                retryable=retryable,
                status_code=min(codes) if codes else None,
            )
        if isinstance(exc, aiosmtplib.SMTPResponseException):
            stage = _STAGES.get(type(exc), "reply")
            return DeliveryError(
                self._clean(f"email: {stage} {exc.code} {exc.message}"),
                retryable=not 500 <= exc.code < 600,
                status_code=exc.code,
            )
        if isinstance(exc, aiosmtplib.SMTPTimeoutError | TimeoutError):
            return DeliveryError(
                f"email: timed out after {self._io_timeout:g}s waiting for the server",
                retryable=True,
            )
        if isinstance(exc, ssl.SSLError):
            reason = exc.reason or type(exc).__name__
            if isinstance(exc, ssl.SSLCertVerificationError):
                reason = exc.verify_message or reason
            return DeliveryError(self._clean(f"email: TLS failed: {reason}"), retryable=True)
        if isinstance(exc, aiosmtplib.SMTPException | OSError):
            return DeliveryError(self._clean(f"email: {type(exc).__name__}: {exc}"), retryable=True)
        if isinstance(exc, ValueError):  # an address aiosmtplib will not put on a command line
            return DeliveryError(self._clean(f"email: {exc}"), retryable=False)
        return DeliveryError(f"email: {type(exc).__name__}", retryable=True)


_STAGES: dict[type[Exception], str] = {
    aiosmtplib.SMTPConnectResponseError: "greeting",
    aiosmtplib.SMTPHeloError: "EHLO",
    aiosmtplib.SMTPAuthenticationError: "AUTH",
    aiosmtplib.SMTPSenderRefused: "MAIL FROM",
    aiosmtplib.SMTPRecipientRefused: "RCPT TO",
    aiosmtplib.SMTPDataError: "DATA",
}


def build(config: EmailConfig, ctx: BuildContext) -> EmailNotifier:
    return EmailNotifier(config, ctx)
