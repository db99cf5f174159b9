"""Problems the account endpoints answer with."""

from vmcloud.core.errors import ForbiddenError, ProblemError, UnauthorizedError


class InvalidCredentialsError(UnauthorizedError):
    type = "invalid-credentials"
    title = "Invalid credentials"
    commit = True  # keep the audit row of the failed attempt

    def __init__(self) -> None:
        super().__init__("The login or password is incorrect.")


class TwoFactorRequiredError(UnauthorizedError):
    type = "two-factor-required"
    title = "Two-factor code required"
    commit = True

    def __init__(
        self, detail: str = "A valid two-factor code is required.", *, commit: bool = True
    ) -> None:
        super().__init__(detail, commit=commit)


class InvalidTokenError(ProblemError):
    status = 401
    type = "invalid-token"
    title = "Invalid or expired token"


class AccountInactiveError(ForbiddenError):
    type = "account-inactive"
    title = "Account not active"


class WrongPasswordError(ForbiddenError):
    type = "invalid-credentials"
    title = "Invalid credentials"
    commit = True

    def __init__(self) -> None:
        super().__init__("The current password is incorrect.")


class InvalidCodeError(ForbiddenError):
    type = "invalid-two-factor-code"
    title = "Invalid two-factor code"
    commit = True

    def __init__(self) -> None:
        super().__init__("The two-factor code is incorrect or was already used.")


class EmailUnverifiedError(ForbiddenError):
    type = "email-unverified"
    title = "Email address not verified"


class InsufficientScopeError(ForbiddenError):
    type = "insufficient-scope"
    title = "Insufficient scope"


class PersonalTokenRefusedError(ForbiddenError):
    """What a personal API token may never do: mint tokens, change the password or 2FA, or
    manage logins. These need a login (an access token from POST /auth/login)."""

    type = "login-required"
    title = "A login is required"
