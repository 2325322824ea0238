"""Tests of auth: login, personal access tokens and the login throttle."""
