"""The vocabulary every layer shares: errors, models, options, events, loops."""
