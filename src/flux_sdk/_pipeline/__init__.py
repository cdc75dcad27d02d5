"""What a call is, the middleware chain it passes through, its background work."""
