"""What follows submission: polling final statuses, tracking them into the state and the
results, webhooks, downloads and reports."""
