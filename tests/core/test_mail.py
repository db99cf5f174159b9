"""The mailers: SMTP against a real SMTP server (aiosmtpd on loopback), the local mailbox
directory, and the choice between them made from the settings."""

from __future__ import annotations

import email
import email.policy
import json
import logging
import smtplib
import socket
from collections.abc import Iterator
from dataclasses import dataclass, field
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword

from vmcloud.config import Settings
from vmcloud.core.logging import configure_logging
from vmcloud.core.mail import Email, MailboxMailer, SmtpMailer, make_mailer

SENDER = "VMCloud <no-reply@vmcloud.test>"
SMTP_USER = "mailer"
SMTP_PASSWORD = "s3cret-smtp-password"  # the test server's own credential


@dataclass
class Received:
    mail_from: str
    rcpt_tos: list[str]
    message: EmailMessage
    login: str | None


@dataclass
class Recorder:
    """An aiosmtpd handler that keeps every message it accepts."""

    received: list[Received] = field(default_factory=list)

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802
        # SMTP carries CRLF line ends; compare bodies as the recipient's mail client would.
        content = envelope.original_content.replace(b"\r\n", b"\n")
        parsed = email.message_from_bytes(content, policy=email.policy.default)
        assert isinstance(parsed, EmailMessage)
        login = session.auth_data if session.authenticated else None
        self.received.append(Received(envelope.mail_from, list(envelope.rcpt_tos), parsed, login))
        return "250 Message accepted for delivery"


def _authenticate(
    server: Any, session: Any, envelope: Any, mechanism: str, auth_data: Any
) -> AuthResult:
    ok = isinstance(auth_data, LoginPassword) and auth_data == (
        SMTP_USER.encode(),
        SMTP_PASSWORD.encode(),
    )
    if not ok:
        return AuthResult(success=False, handled=False)  # the server answers 535
    return AuthResult(success=True, auth_data=SMTP_USER)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@dataclass
class SmtpServer:
    port: int
    recorder: Recorder

    @property
    def received(self) -> list[Received]:
        return self.recorder.received


@pytest.fixture
def smtp_server() -> Iterator[SmtpServer]:
    # AUTH is offered on the plain connection (no TLS in tests) but not required, so one
    # server serves both the anonymous and the authenticated cases.
    recorder = Recorder()
    port = _free_port()
    # aiosmtpd narrates every connection at INFO from its own thread; keep test output clean.
    server_log = logging.getLogger("mail.log")
    level = server_log.level
    server_log.setLevel(logging.WARNING)
    controller = Controller(
        recorder,
        hostname="127.0.0.1",
        port=port,
        authenticator=_authenticate,
        auth_require_tls=False,
    )
    controller.start()
    try:
        yield SmtpServer(port, recorder)
    finally:
        controller.stop()
        server_log.setLevel(level)


def _smtp_settings(tmp_path: Path, port: int, **extra: Any) -> Settings:
    return Settings(
        data_dir=tmp_path,
        smtp_host="127.0.0.1",
        smtp_port=port,
        smtp_security="none",
        smtp_timeout=2,
        mail_from=SENDER,
        **extra,
    )


WELCOME = Email(
    to="alice@example.com",
    subject="Confirm your email address",
    text="Open https://cloud.example.com/verify-email?token=abc123 to confirm.\n",
)


def test_smtp_delivers_the_message_to_a_real_server(
    tmp_path: Path, smtp_server: SmtpServer
) -> None:
    SmtpMailer(_smtp_settings(tmp_path, smtp_server.port)).send(WELCOME)

    assert len(smtp_server.received) == 1
    got = smtp_server.received[0]
    assert got.mail_from == "no-reply@vmcloud.test"
    assert got.rcpt_tos == ["alice@example.com"]
    assert got.login is None
    message = got.message
    assert message["From"] == SENDER
    assert message["To"] == "alice@example.com"
    assert message["Subject"] == "Confirm your email address"
    assert message["Date"]
    assert message["Message-ID"].endswith("@vmcloud.local>")
    assert message.get_content() == WELCOME.text


def test_smtp_carries_non_ascii_subject_and_body_intact(
    tmp_path: Path, smtp_server: SmtpServer
) -> None:
    # Site names and user-facing text are not limited to ASCII.
    note = Email(to="bob@example.com", subject="Bem-vindo à Nuvem Ação ☁", text="Olá, João!\n")
    SmtpMailer(_smtp_settings(tmp_path, smtp_server.port)).send(note)

    message = smtp_server.received[0].message
    assert message["Subject"] == note.subject
    assert message.get_content() == note.text


def test_smtp_logs_in_when_credentials_are_configured(
    tmp_path: Path, smtp_server: SmtpServer
) -> None:
    settings = _smtp_settings(
        tmp_path, smtp_server.port, smtp_username=SMTP_USER, smtp_password=SMTP_PASSWORD
    )
    SmtpMailer(settings).send(WELCOME)

    assert [r.login for r in smtp_server.received] == [SMTP_USER]


def test_smtp_with_wrong_credentials_raises_and_sends_nothing(
    tmp_path: Path, smtp_server: SmtpServer
) -> None:
    settings = _smtp_settings(
        tmp_path, smtp_server.port, smtp_username=SMTP_USER, smtp_password="wrong"
    )
    with pytest.raises(smtplib.SMTPAuthenticationError):
        SmtpMailer(settings).send(WELCOME)
    assert smtp_server.received == []


def test_starttls_refuses_to_fall_back_to_clear_text(
    tmp_path: Path, smtp_server: SmtpServer
) -> None:
    # The server offers no STARTTLS: a mailer configured for it must fail, not send in clear.
    settings = _smtp_settings(tmp_path, smtp_server.port).model_copy(
        update={"smtp_security": "starttls"}
    )
    with pytest.raises(smtplib.SMTPNotSupportedError):
        SmtpMailer(settings).send(WELCOME)
    assert smtp_server.received == []


def test_smtp_server_down_raises_so_the_job_retries(tmp_path: Path) -> None:
    nothing_listens = _free_port()
    with pytest.raises((OSError, smtplib.SMTPException)):
        SmtpMailer(_smtp_settings(tmp_path, nothing_listens)).send(WELCOME)


def _json_lines(text: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in text.splitlines() if line.startswith("{")]


def test_mailbox_writes_one_parseable_eml_per_message_and_logs_its_links(
    tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    configure_logging("info", "json")  # bind the handler to the captured stderr
    directory = tmp_path / "mail"  # does not exist yet: the mailer creates it
    mailer = MailboxMailer(directory, SENDER)
    second = Email(
        to="carol@example.com",
        subject="Reset your password",
        text="Go to http://127.0.0.1:8000/reset?token=xyz or https://example.org/help\n",
    )
    mailer.send(WELCOME)
    mailer.send(second)

    files = sorted(directory.glob("*.eml"))
    assert len(files) == 2
    parsed = [email.message_from_bytes(p.read_bytes(), policy=email.policy.default) for p in files]
    by_recipient = {m["To"]: m for m in parsed if isinstance(m, EmailMessage)}
    assert set(by_recipient) == {"alice@example.com", "carol@example.com"}
    assert by_recipient["carol@example.com"]["From"] == SENDER
    assert by_recipient["carol@example.com"]["Subject"] == "Reset your password"
    assert by_recipient["carol@example.com"].get_content() == second.text

    written = [
        line for line in _json_lines(capfd.readouterr().err) if line["event"] == "mail.written"
    ]
    assert len(written) == 2
    carol = next(line for line in written if line["to"] == "carol@example.com")
    assert carol["links"] == ["http://127.0.0.1:8000/reset?token=xyz", "https://example.org/help"]
    assert Path(carol["path"]) in files


def test_make_mailer_sends_over_smtp_when_a_host_is_set(
    tmp_path: Path, smtp_server: SmtpServer
) -> None:
    mailer = make_mailer(_smtp_settings(tmp_path, smtp_server.port))
    mailer.send(WELCOME)

    assert isinstance(mailer, SmtpMailer)
    assert len(smtp_server.received) == 1
    assert not (tmp_path / "mail").exists()


def test_make_mailer_writes_to_the_data_dir_mailbox_without_a_host(tmp_path: Path) -> None:
    mailer = make_mailer(Settings(data_dir=tmp_path, smtp_host=None, mail_from=SENDER))
    mailer.send(WELCOME)

    assert isinstance(mailer, MailboxMailer)
    assert len(list((tmp_path / "mail").glob("*.eml"))) == 1
