"""Rules for the identity fields every way of creating a user shares (API, CLI)."""

from __future__ import annotations

import re

from email_validator import EmailNotValidError, validate_email

from vmcloud.core.errors import InvalidInputError

USERNAME_RE = re.compile(r"^[A-Za-z0-9._-]{3,100}$")


def normalise_email(value: str) -> str:
    """Syntax-checked and lower-cased, as emails are stored and compared."""
    try:
        result = validate_email(value.strip(), check_deliverability=False)
    except EmailNotValidError as exc:
        raise InvalidInputError(
            "The email address is not valid.", errors=[{"field": "email", "message": str(exc)}]
        ) from exc
    return result.normalized.lower()


def check_username(value: str) -> str:
    value = value.strip()
    if not USERNAME_RE.match(value):
        raise InvalidInputError(
            "The username is not valid.",
            errors=[
                {
                    "field": "username",
                    "message": "3-100 characters: letters, digits, '-', '_' and '.'",
                }
            ],
        )
    return value
