"""The JoggAI side: the HTTP client, the quota and its limiter, the backoff policy, the
account's listing and what is reconciled from it, and the look-ups."""
