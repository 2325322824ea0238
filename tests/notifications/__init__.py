"""Tests of notifications: sending, policy, the feed, the unread count, settings and the API."""
