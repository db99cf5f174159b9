"""Payments: top-ups through payment providers, their webhooks, and refunds."""
