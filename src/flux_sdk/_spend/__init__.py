"""What a call costs and what is recorded: meter, ledger, prices, cache, OTel."""
