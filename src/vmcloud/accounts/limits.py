"""Rate limits on the account endpoints (per client address and per account)."""

from vmcloud.core.ratelimit import Limit

LOGIN_PER_IP = Limit("login-ip", hits=30, period=300)
LOGIN_PER_ACCOUNT = Limit("login-account", hits=10, period=900)
REFRESH_PER_IP = Limit("refresh-ip", hits=120, period=60)
REGISTER_PER_IP = Limit("register-ip", hits=10, period=3600)
REGISTER_PER_ACCOUNT = Limit("register-account", hits=5, period=3600)
REFRESH_PER_ACCOUNT = Limit("refresh-account", hits=60, period=60)
RESEND_PER_IP = Limit("resend-ip", hits=10, period=3600)
RESEND_PER_ACCOUNT = Limit("resend-account", hits=3, period=3600)
RESET_PER_IP = Limit("reset-ip", hits=10, period=3600)
RESET_PER_ACCOUNT = Limit("reset-account", hits=3, period=3600)
VERIFY_PER_IP = Limit("verify-ip", hits=30, period=3600)
SECOND_FACTOR_PER_ACCOUNT = Limit("second-factor-account", hits=10, period=900)
PASSWORD_CHANGE_PER_ACCOUNT = Limit("password-change-account", hits=10, period=900)
