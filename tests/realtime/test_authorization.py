"""Who may subscribe to which channel: the pure rule, without HTTP or a database."""

from __future__ import annotations

import base64
import json
import secrets
import uuid

import pytest

from notiflow.kit.errors import Forbidden, InvalidInput
from notiflow.realtime.authorization import (
    ChannelUser,
    Refusal,
    authorize_channel,
    belongs_to_tenant,
    encryption_master_key,
    require_channel,
    subscription_auth,
)
from notiflow.realtime.protocol import ChannelKind
from notiflow.realtime.signing import shared_secret, verify_channel_auth
from tests.conftest import TEST_PUSHER_KEY, TEST_PUSHER_SECRET, make_settings

ADA = ChannelUser(
    user_id=uuid.UUID("3f1c1d2e-0000-4000-8000-00000000000a"),
    tenant_id=uuid.UUID("7a7a7a7a-0000-4000-8000-0000000000aa"),
    name="Ada",
)
# Another user of the same tenant.
BOB = ChannelUser(
    user_id=uuid.UUID("3f1c1d2e-0000-4000-8000-00000000000b"),
    tenant_id=ADA.tenant_id,
    name="Bob",
)
# Ada again, signed in with a token of her second tenant.
ADA_ELSEWHERE = ChannelUser(
    user_id=ADA.user_id,
    tenant_id=uuid.UUID("7a7a7a7a-0000-4000-8000-0000000000bb"),
    name="Ada",
)


@pytest.mark.parametrize(
    ("channel", "kind"),
    [
        (f"private-notifications.{ADA.user_id}", ChannelKind.PRIVATE),
        (f"private-notifications.{str(ADA.user_id).upper()}", ChannelKind.PRIVATE),
        (f"private-encrypted-notifications.{ADA.user_id}", ChannelKind.ENCRYPTED),
        (f"private-tenant.{ADA.tenant_id}", ChannelKind.PRIVATE),
        (f"private-encrypted-tenant.{ADA.tenant_id}", ChannelKind.ENCRYPTED),
        (f"presence-tenant.{ADA.tenant_id}", ChannelKind.PRESENCE),
    ],
)
def test_own_channels_are_allowed(channel: str, kind: ChannelKind) -> None:
    decision = authorize_channel(ADA, channel)
    assert decision.allowed
    assert decision.refusal is None
    assert decision.kind is kind
    assert require_channel(ADA, channel) is kind


@pytest.mark.parametrize(
    ("channel", "kind"),
    [
        (f"private-cache-notifications.{ADA.user_id}", ChannelKind.PRIVATE),
        (f"private-cache-tenant.{ADA.tenant_id}", ChannelKind.PRIVATE),
        (f"presence-cache-tenant.{ADA.tenant_id}", ChannelKind.PRESENCE),
        (f"private-encrypted-cache-tenant.{ADA.tenant_id}", ChannelKind.ENCRYPTED),
    ],
)
def test_cache_variants_follow_the_rule_of_their_channel(channel: str, kind: ChannelKind) -> None:
    assert require_channel(ADA, channel) is kind
    other = channel.replace(str(ADA.user_id), str(BOB.user_id)).replace(
        str(ADA.tenant_id), str(ADA_ELSEWHERE.tenant_id)
    )
    assert authorize_channel(ADA, other).refusal is Refusal.NOT_ALLOWED
    assert authorize_channel(ADA, f"presence-cache-notifications.{ADA.user_id}").refusal is (
        Refusal.NOT_ALLOWED
    )
    # the reply carries what the kind needs: channel_data for presence, the key for encryption
    reply = subscription_auth(make_settings(), ADA, "1.2", channel)
    assert ("channel_data" in reply) is (kind is ChannelKind.PRESENCE)
    assert ("shared_secret" in reply) is (kind is ChannelKind.ENCRYPTED)


def test_another_users_notifications_are_refused() -> None:
    for channel in (
        f"private-notifications.{BOB.user_id}",
        f"private-encrypted-notifications.{BOB.user_id}",
    ):
        decision = authorize_channel(ADA, channel)
        assert not decision.allowed
        assert decision.refusal is Refusal.NOT_ALLOWED


def test_notifications_are_never_a_presence_channel() -> None:
    decision = authorize_channel(ADA, f"presence-notifications.{ADA.user_id}")
    assert decision.refusal is Refusal.NOT_ALLOWED


def test_the_tokens_tenant_binds_the_tenant_channels() -> None:
    """A user in two tenants reaches each tenant's channels only with that tenant's token."""
    own = f"presence-tenant.{ADA.tenant_id}"
    other = f"presence-tenant.{ADA_ELSEWHERE.tenant_id}"
    assert authorize_channel(ADA, own).allowed
    assert not authorize_channel(ADA, other).allowed
    assert authorize_channel(ADA_ELSEWHERE, other).allowed
    assert not authorize_channel(ADA_ELSEWHERE, own).allowed
    # The user's own notifications do not depend on the tenant of the token.
    assert authorize_channel(ADA_ELSEWHERE, f"private-notifications.{ADA.user_id}").allowed


def test_a_tenant_channel_is_shared_by_the_members_of_the_tenant() -> None:
    assert authorize_channel(BOB, f"private-tenant.{ADA.tenant_id}").allowed


@pytest.mark.parametrize(
    "channel",
    [
        "private-orders.1",
        "presence-room.1",
        f"private-notification.{ADA.user_id}",
        f"private-tenants.{ADA.tenant_id}",
        f"private-notifications.{ADA.user_id}.extra",
        "private-notifications.42",
        "private-tenant.not-a-uuid-but-thirty-six-chars-long-xx",
        f"private-private-tenant.{ADA.tenant_id}",
    ],
)
def test_unknown_channels_are_refused(channel: str) -> None:
    decision = authorize_channel(ADA, channel)
    assert decision.refusal is Refusal.NOT_ALLOWED
    with pytest.raises(Forbidden, match="you may not subscribe to"):
        require_channel(ADA, channel)


def test_public_channels_need_no_authorization() -> None:
    decision = authorize_channel(ADA, "news")
    assert decision.refusal is Refusal.PUBLIC
    assert decision.kind is ChannelKind.PUBLIC
    with pytest.raises(Forbidden, match="public channels need no authorization"):
        require_channel(ADA, "news")


@pytest.mark.parametrize("channel", ["", "private-a b", "x" * 300, "private-ü"])
def test_invalid_names_are_bad_input(channel: str) -> None:
    assert authorize_channel(ADA, channel).refusal is Refusal.INVALID_NAME
    with pytest.raises(InvalidInput, match="not a valid channel name"):
        require_channel(ADA, channel)


def test_the_presence_reply_signs_the_users_id_and_name() -> None:
    channel = f"presence-tenant.{ADA.tenant_id}"
    reply = subscription_auth(make_settings(), ADA, "123.456", channel)
    assert json.loads(reply["channel_data"]) == {
        "user_id": str(ADA.user_id),
        "user_info": {"name": "Ada"},
    }
    assert verify_channel_auth(
        TEST_PUSHER_KEY,
        TEST_PUSHER_SECRET,
        "123.456",
        channel,
        reply["auth"],
        reply["channel_data"],
    )


def test_the_private_reply_is_the_signature_alone() -> None:
    channel = f"private-notifications.{ADA.user_id}"
    reply = subscription_auth(make_settings(), ADA, "123.456", channel)
    assert set(reply) == {"auth"}
    assert verify_channel_auth(
        TEST_PUSHER_KEY, TEST_PUSHER_SECRET, "123.456", channel, reply["auth"]
    )


def test_the_encrypted_reply_carries_the_channels_shared_secret() -> None:
    channel = f"private-encrypted-notifications.{ADA.user_id}"
    master_key = secrets.token_bytes(32)
    settings = make_settings(pusher_encryption_master_key=base64.b64encode(master_key).decode())
    reply = subscription_auth(settings, ADA, "123.456", channel)
    assert encryption_master_key(settings) == master_key
    assert base64.b64decode(reply["shared_secret"]) == shared_secret(master_key, channel)
    assert verify_channel_auth(
        TEST_PUSHER_KEY, TEST_PUSHER_SECRET, "123.456", channel, reply["auth"]
    )


def test_without_a_configured_master_key_one_is_derived_from_the_secret_key() -> None:
    derived = encryption_master_key(make_settings())
    assert len(derived) == 32
    assert derived == encryption_master_key(make_settings())
    assert derived != encryption_master_key(make_settings(secret_key="another-" * 6))


@pytest.mark.parametrize(
    ("channel", "ours"),
    [
        (f"private-notifications.{ADA.user_id}", True),
        (f"private-encrypted-notifications.{ADA.user_id}", True),
        (f"private-cache-notifications.{ADA.user_id}", True),
        (f"presence-notifications.{ADA.user_id}", False),  # never a presence channel
        (f"private-notifications.{uuid.UUID(int=0xB0B)}", False),  # not a member
        (f"private-tenant.{ADA.tenant_id}", True),
        (f"presence-tenant.{ADA.tenant_id}", True),
        (f"presence-cache-tenant.{ADA.tenant_id}", True),
        (f"private-encrypted-cache-tenant.{ADA.tenant_id}", True),
        (f"private-tenant.{uuid.UUID(int=0x0FF)}", False),  # another tenant's
        (f"tenant.{ADA.tenant_id}", False),  # public: nobody's
        ("private-orders", False),
        ("not a channel", False),
    ],
)
def test_a_channel_belongs_to_the_tenant_of_its_name_or_of_its_user(
    channel: str, ours: bool
) -> None:
    assert belongs_to_tenant(channel, ADA.tenant_id, frozenset({ADA.user_id})) is ours
