"""The text of billing emails."""

from __future__ import annotations

from decimal import Decimal

from vmcloud.core.mail import Email


def past_due(
    *, to: str, site: str, instance: str, amount: Decimal, currency: str, grace_days: int, link: str
) -> Email:
    return Email(
        to=to,
        subject=f"{site}: payment needed for {instance}",
        text=(
            f"Your balance does not cover {amount:.2f} {currency} due for {instance}.\n\n"
            "The instance is suspended: it is stopped and cannot be started until the amount "
            "is paid.\n"
            f"Top up your balance within {grace_days} days and it starts again by itself:\n\n"
            f"  {link}\n\n"
            f"After {grace_days} days unpaid the instance and its data are deleted.\n"
        ),
    )


def low_balance(*, to: str, site: str, balance: Decimal, currency: str, link: str) -> Email:
    return Email(
        to=to,
        subject=f"{site}: your balance is running low",
        text=(
            f"Your balance is down to {balance:.2f} {currency}.\n\n"
            "Top up before it runs out: instances whose charges the balance cannot cover are "
            f"suspended.\n\n  {link}\n"
        ),
    )
