"""Effective preference resolution, table-driven over global x per-type x tenant policy x channel.

Expected outcomes are written out by hand from the rules in docs/ledger.md, not recomputed.
"""

from __future__ import annotations

import uuid

import pytest
from pydantic import ValidationError

from notiflow.notifications.policy import (
    PreferenceFlags,
    Reason,
    Recipient,
    TenantNotificationSettings,
    in_push_rollout,
    resolve,
)
from notiflow.notifications.types import (
    TYPE_REGISTRY,
    NotificationChannel,
    NotificationType,
)

EMAIL = NotificationChannel.EMAIL
PUSH = NotificationChannel.PUSH
IN_APP = NotificationChannel.IN_APP
SMS = NotificationChannel.SMS
CRITICAL = NotificationType.PAYMENT_FAILED  # enforceable; email/push/sms on by default
QUIET = NotificationType.POST_PUBLISHED  # not enforceable; email and sms off by default

ALLOW = "allow"


def _tenant(rule: str | None, notification_type: NotificationType, channel: NotificationChannel):
    if rule in ("enforced", "forbidden"):
        return TenantNotificationSettings(policy={notification_type: {channel: rule}})
    if rule in ("default_on", "default_off"):
        return TenantNotificationSettings(
            defaults={notification_type: {channel: rule == "default_on"}}
        )
    return TenantNotificationSettings()


def _recipient(
    channel: NotificationChannel, global_on: bool, per_type: bool | None, **extra: object
) -> Recipient:
    preferences = {}
    if per_type is not None:
        flags = {"in_app": True, "email": True, "push": True}
        if channel is not SMS:
            flags[channel.value] = per_type
        preferences[CRITICAL] = PreferenceFlags(**flags)
        preferences[QUIET] = PreferenceFlags(**flags)
    return Recipient(
        user_id=uuid.uuid4(),
        email_enabled=global_on if channel is EMAIL else True,
        push_enabled=global_on if channel is PUSH else True,
        preferences=preferences,
        **extra,  # type: ignore[arg-type]
    )


# (global switch, per-type row, tenant rule) -> expected, for the email and push channels of an
# enforceable type whose registry default is on.
EXTERNAL_CASES = [
    # no tenant rule: the global switch beats the per-type row, which beats the registry
    (True, None, None, ALLOW),
    (True, True, None, ALLOW),
    (True, False, None, Reason.USER_TYPE_OFF),
    (False, None, None, Reason.USER_GLOBAL_OFF),
    (False, True, None, Reason.USER_GLOBAL_OFF),
    (False, False, None, Reason.USER_GLOBAL_OFF),
    # enforced: on whatever the user chose
    (True, None, "enforced", Reason.TENANT_ENFORCED),
    (True, False, "enforced", Reason.TENANT_ENFORCED),
    (False, False, "enforced", Reason.TENANT_ENFORCED),
    (False, None, "enforced", Reason.TENANT_ENFORCED),
    # forbidden: off whatever the user chose
    (True, None, "forbidden", Reason.TENANT_POLICY),
    (True, True, "forbidden", Reason.TENANT_POLICY),
    (False, True, "forbidden", Reason.TENANT_POLICY),
    # tenant default on: only for users who did not choose
    (True, None, "default_on", ALLOW),
    (True, False, "default_on", Reason.USER_TYPE_OFF),
    (False, None, "default_on", Reason.USER_GLOBAL_OFF),
    # tenant default off: the user's own choice still wins
    (True, None, "default_off", Reason.TENANT_DEFAULT_OFF),
    (True, True, "default_off", ALLOW),
    (True, False, "default_off", Reason.USER_TYPE_OFF),
    (False, True, "default_off", Reason.USER_GLOBAL_OFF),
]


def _outcome(decision) -> str | Reason:
    if decision.allowed:
        return decision.reason or ALLOW
    assert decision.reason is not None, "a suppression always carries its reason"
    return decision.reason


@pytest.mark.parametrize("channel", [EMAIL, PUSH])
@pytest.mark.parametrize(("global_on", "per_type", "rule", "expected"), EXTERNAL_CASES)
def test_external_channel_resolution(channel, global_on, per_type, rule, expected) -> None:
    recipient = _recipient(channel, global_on, per_type)
    decision = resolve(CRITICAL, channel, recipient, _tenant(rule, CRITICAL, channel))
    assert _outcome(decision) == expected


@pytest.mark.parametrize(
    ("per_type", "rule", "expected"),
    [
        (None, None, Reason.TYPE_DEFAULT_OFF),  # post_published is not emailed by default
        (True, None, ALLOW),
        (None, "default_on", ALLOW),
        (False, "default_on", Reason.USER_TYPE_OFF),
        (None, "forbidden", Reason.TENANT_POLICY),
    ],
)
def test_registry_default_applies_last(per_type, rule, expected) -> None:
    recipient = _recipient(EMAIL, True, per_type)
    assert _outcome(resolve(QUIET, EMAIL, recipient, _tenant(rule, QUIET, EMAIL))) == expected


@pytest.mark.parametrize(
    ("global_off", "per_type", "rule", "expected"),
    [
        # in-app has no global switch: turning email and push off leaves the feed alone
        (True, None, None, ALLOW),
        (False, False, None, Reason.USER_TYPE_OFF),
        (True, False, "enforced", Reason.TENANT_ENFORCED),
        (False, True, "forbidden", Reason.TENANT_POLICY),
        (False, None, "default_off", Reason.TENANT_DEFAULT_OFF),
    ],
)
def test_in_app_resolution(global_off, per_type, rule, expected) -> None:
    recipient = Recipient(
        user_id=uuid.uuid4(),
        email_enabled=not global_off,
        push_enabled=not global_off,
        preferences=(
            {CRITICAL: PreferenceFlags(in_app=per_type, email=True, push=True)}
            if per_type is not None
            else {}
        ),
    )
    decision = resolve(CRITICAL, IN_APP, recipient, _tenant(rule, CRITICAL, IN_APP))
    assert _outcome(decision) == expected


@pytest.mark.parametrize(
    ("notification_type", "verified_phone", "rule", "expected"),
    [
        (CRITICAL, False, None, Reason.NO_VERIFIED_PHONE),
        (CRITICAL, False, "enforced", Reason.NO_VERIFIED_PHONE),  # cannot text without a number
        (CRITICAL, True, None, ALLOW),
        (CRITICAL, True, "forbidden", Reason.TENANT_POLICY),
        (QUIET, True, None, Reason.TYPE_DEFAULT_OFF),
        (QUIET, True, "default_on", ALLOW),
    ],
)
def test_sms_resolution(notification_type, verified_phone, rule, expected) -> None:
    recipient = Recipient(user_id=uuid.uuid4(), has_verified_phone=verified_phone)
    tenant = _tenant(rule, notification_type, SMS)
    assert _outcome(resolve(notification_type, SMS, recipient, tenant)) == expected


def test_push_rollout_to_admins_only() -> None:
    admin = Recipient(user_id=uuid.uuid4(), is_admin=True)
    member = Recipient(user_id=uuid.uuid4(), is_admin=False)
    tenant = TenantNotificationSettings()
    assert resolve(CRITICAL, PUSH, admin, tenant, "admins").allowed
    assert _outcome(resolve(CRITICAL, PUSH, member, tenant, "admins")) == Reason.ROLLOUT
    # the rollout stage gates push only
    assert resolve(CRITICAL, EMAIL, member, tenant, "admins").allowed


def test_tenant_rollout_overrides_the_global_stage() -> None:
    member = Recipient(user_id=uuid.uuid4())
    tenant = TenantNotificationSettings(push_rollout="admins")
    assert _outcome(resolve(CRITICAL, PUSH, member, tenant, "all")) == Reason.ROLLOUT


def test_a_user_with_push_off_is_told_so_rather_than_rollout() -> None:
    member = Recipient(user_id=uuid.uuid4(), push_enabled=False)
    decision = resolve(CRITICAL, PUSH, member, TenantNotificationSettings(), "admins")
    assert _outcome(decision) == Reason.USER_GLOBAL_OFF


def test_percentage_rollout_is_stable_and_grows_monotonically() -> None:
    users = [uuid.uuid4() for _ in range(2000)]
    at_10 = {u for u in users if in_push_rollout(u, False, 10)}
    at_50 = {u for u in users if in_push_rollout(u, False, 50)}
    assert at_10 <= at_50, "users let in at 10% stay in at 50%"
    assert 100 < len(at_10) < 300
    assert 850 < len(at_50) < 1150
    assert {u for u in users if in_push_rollout(u, False, 10)} == at_10
    assert not any(in_push_rollout(u, True, 0) for u in users)
    assert all(in_push_rollout(u, False, 100) for u in users)


def test_only_enforceable_types_can_be_enforced() -> None:
    with pytest.raises(ValidationError, match="cannot be enforced"):
        TenantNotificationSettings(policy={QUIET: {EMAIL: "enforced"}})
    TenantNotificationSettings(policy={QUIET: {EMAIL: "forbidden"}})


def test_bad_rollout_value_is_refused() -> None:
    with pytest.raises(ValidationError, match="rollout"):
        TenantNotificationSettings(push_rollout="half")


def test_registry_covers_all_32_types() -> None:
    assert len(NotificationType) == 32
    assert set(TYPE_REGISTRY) == set(NotificationType)
    assert {channel.value for channel in NotificationChannel} == {"in_app", "email", "push", "sms"}
