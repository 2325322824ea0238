"""In-app notifications, preferences, the delivery ledger and the send path."""
