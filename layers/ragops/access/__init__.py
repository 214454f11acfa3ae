"""Access to the API: API keys, who a request acts for, and per-key rate limits."""
