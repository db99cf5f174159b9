"""The text of account emails."""

from __future__ import annotations

from vmcloud.core.mail import Email


def verification(*, to: str, site: str, link: str, token: str, hours: int) -> Email:
    return Email(
        to=to,
        subject=f"Confirm your email address for {site}",
        text=(
            f"Welcome to {site}!\n\n"
            f"Confirm your email address by opening this link within {hours} hours:\n\n"
            f"  {link}\n\n"
            f"Or send this token to POST /api/v1/auth/verify-email:\n\n  {token}\n\n"
            "If you did not sign up, ignore this message.\n"
        ),
    )


def password_reset(*, to: str, site: str, link: str, token: str, minutes: int) -> Email:
    return Email(
        to=to,
        subject=f"Reset your {site} password",
        text=(
            f"Someone asked to reset the password of your {site} account.\n\n"
            f"Choose a new password by opening this link within {minutes} minutes:\n\n"
            f"  {link}\n\n"
            f"Or send this token with your new password to "
            f"POST /api/v1/auth/password-reset/confirm:\n\n  {token}\n\n"
            "If it was not you, ignore this message: your password stays as it is.\n"
        ),
    )
