"""Delivering notifications on external channels (email, Web Push, SMS) from the outbox."""
