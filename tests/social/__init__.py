"""Tests of the social accounts domain: providers, the fake Mastodon server, API and jobs."""
