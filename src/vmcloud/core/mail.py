"""Outgoing email behind one interface: SMTP when configured, else a local mailbox directory.

Mail is only ever sent from background jobs, never inside a request.
"""

from __future__ import annotations

import re
import smtplib
import ssl
import uuid
from abc import ABC, abstractmethod
from dataclasses import dataclass
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from pathlib import Path

from vmcloud.config import Settings
from vmcloud.core.clock import utcnow
from vmcloud.core.logging import get_logger

log = get_logger(__name__)
_LINK = re.compile(r"https?://\S+")


@dataclass(frozen=True)
class Email:
    to: str
    subject: str
    text: str


class Mailer(ABC):
    """Sends one message or raises; the job that called it retries on failure."""

    def __init__(self, sender: str) -> None:
        self.sender = sender

    def build(self, email: Email) -> EmailMessage:
        message = EmailMessage()
        message["From"] = self.sender
        message["To"] = email.to
        message["Subject"] = email.subject
        message["Date"] = formatdate(usegmt=True)
        message["Message-ID"] = make_msgid(domain="vmcloud.local")
        message.set_content(email.text)
        return message

    @abstractmethod
    def send(self, email: Email) -> None: ...


class SmtpMailer(Mailer):
    def __init__(self, settings: Settings) -> None:
        super().__init__(settings.mail_from)
        assert settings.smtp_host
        self.host = settings.smtp_host
        self.port = settings.smtp_port
        self.security = settings.smtp_security
        self.username = settings.smtp_username
        self.password = settings.smtp_password
        self.timeout = settings.smtp_timeout

    def send(self, email: Email) -> None:
        message = self.build(email)
        context = ssl.create_default_context()
        smtp: smtplib.SMTP
        if self.security == "ssl":
            smtp = smtplib.SMTP_SSL(self.host, self.port, timeout=self.timeout, context=context)
        else:
            smtp = smtplib.SMTP(self.host, self.port, timeout=self.timeout)
        with smtp:
            if self.security == "starttls":
                smtp.starttls(context=context)
            if self.username and self.password:
                smtp.login(self.username, self.password.get_secret_value())
            smtp.send_message(message)
        log.info("mail.sent", to=email.to, subject=email.subject, transport="smtp")


class MailboxMailer(Mailer):
    """Writes each message as an ``.eml`` file and logs its links, so a single-machine install
    works with no mail server at all."""

    def __init__(self, directory: Path, sender: str) -> None:
        super().__init__(sender)
        self.directory = directory

    def send(self, email: Email) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        stamp = utcnow().strftime("%Y%m%dT%H%M%S%f")
        path = self.directory / f"{stamp}-{uuid.uuid4().hex[:8]}.eml"
        path.write_bytes(bytes(self.build(email)))
        log.info(
            "mail.written",
            to=email.to,
            subject=email.subject,
            path=str(path),
            links=_LINK.findall(email.text),
        )


def make_mailer(settings: Settings) -> Mailer:
    if settings.smtp_host:
        return SmtpMailer(settings)
    return MailboxMailer(settings.data_dir / "mail", settings.mail_from)
