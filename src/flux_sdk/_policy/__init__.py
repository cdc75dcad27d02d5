"""Retries, limits, breakers, shared limits: whether and when to send."""
