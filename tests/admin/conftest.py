"""Fixtures shared with the delivery tests (a real SMTP server)."""

from tests.delivery.conftest import smtp_server  # noqa: F401 - re-exported fixture
