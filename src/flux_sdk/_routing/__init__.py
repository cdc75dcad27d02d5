"""How a call reaches a host: one attempt's steps, routes, the router."""
