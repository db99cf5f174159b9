"""Payment providers by name: the one place that knows them all."""

from __future__ import annotations

from vmcloud.billing.payments.providers import ManualProvider, PaymentProvider, UnknownProviderError
from vmcloud.billing.payments.sandbox import SandboxProvider
from vmcloud.billing.payments.stripe import StripeProvider
from vmcloud.config import Settings

REGISTRY: dict[str, type[PaymentProvider]] = {
    "manual": ManualProvider,
    "sandbox": SandboxProvider,
    "stripe": StripeProvider,
}


def provider_for(name: str, settings: Settings) -> PaymentProvider:
    """The provider called ``name``; :class:`UnknownProviderError` (404) if there is none.
    Whether customers may use it is the service's business (``billing.payment_providers``)."""
    kind = REGISTRY.get(name)
    if kind is None:
        raise UnknownProviderError(f"There is no payment provider {name[:50]!r}.")
    return kind(settings)
