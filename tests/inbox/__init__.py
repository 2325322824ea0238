"""Tests of the inbox: sync, notifications, archiving and the API."""
