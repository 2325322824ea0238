"""Email addresses on the special-use test domains, accepted in development only.

``email_validator`` (behind pydantic's ``EmailStr`` and ``notiflow users create``) refuses
addresses under the special-use names of RFC 2606 / RFC 6761, such as ``bob@acme.test`` or
``ada@demo.notiflow.localhost``: no mail to them can be delivered. In development those are
exactly the addresses people make up (and the demo seeds), and notiflow's development mail goes
to a folder anyway (docs/delivery.md), so there they are accepted; everywhere else they stay
refused.
"""

from __future__ import annotations

import email_validator

from notiflow.config import Environment, Settings

DEVELOPMENT_TEST_DOMAINS = ("test", "localhost")


def accept_test_domains(settings: Settings) -> None:
    """In development, let addresses under the test domains through (process-wide)."""
    if settings.env is not Environment.DEVELOPMENT:
        return
    for name in DEVELOPMENT_TEST_DOMAINS:
        if name in email_validator.SPECIAL_USE_DOMAIN_NAMES:
            email_validator.SPECIAL_USE_DOMAIN_NAMES.remove(name)
