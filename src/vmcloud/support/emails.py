"""The text of support emails. Only public messages are ever quoted; internal notes never
reach these functions' callers for customers (see ``support.tasks``)."""

from __future__ import annotations

from vmcloud.core.mail import Email


def _line(value: str) -> str:
    # A second guard beside the schema's: header values stay on one line.
    return " ".join(value.split())


def staff_reply(*, to: str, site: str, subject: str, message: str, link: str) -> Email:
    return Email(
        to=to,
        subject=_line(f"[{site}] Re: {subject}"),
        text=f'Support answered your ticket "{subject}":\n\n{message}\n\nReply here: {link}\n',
    )


def resolved(*, to: str, site: str, subject: str, link: str) -> Email:
    return Email(
        to=to,
        subject=_line(f"[{site}] Resolved: {subject}"),
        text=(
            f'Your ticket "{subject}" is resolved.\n\n'
            f"If it is not, reply and it opens again; if it is, you can rate the help you got:\n"
            f"{link}\n"
        ),
    )


def for_staff(
    *, to: str, site: str, subject: str, customer: str, message: str, new: bool, link: str
) -> Email:
    what = "opened a ticket" if new else "replied"
    return Email(
        to=to,
        subject=_line(f"[{site}] {'New ticket' if new else 'Customer reply'}: {subject}"),
        text=f"{customer} {what}:\n\n{message}\n\nQueue: {link}\n",
    )
