"""One-click unsubscribe (RFC 8058): signed tokens, the confirmation page and the POST that turns
one notification type's emails off, starting from the link in a real email."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from urllib.parse import urlsplit

import httpx
import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import async_sessionmaker

from notiflow.auth.actor import Actor
from notiflow.delivery import unsubscribe_service
from notiflow.delivery.channels import DeliveryContext, Outcome
from notiflow.delivery.email import EmailSender
from notiflow.delivery.unsubscribe import (
    UnsubscribeTarget,
    make_unsubscribe_token,
    read_unsubscribe_token,
)
from notiflow.kit.errors import NotFound
from notiflow.main.runtime import Runtime
from notiflow.models import AuditLog, Notification
from notiflow.notifications.preferences import PreferenceUpdate
from notiflow.notifications.types import NotificationType
from tests.conftest import MakeMember, Member, commit, make_settings
from tests.delivery.conftest import SmtpServer

MENTION = NotificationType.NEW_MENTION
ONE_CLICK = {"List-Unsubscribe": "One-Click"}

# ---------------------------------------------------------------------------- tokens


def test_token_names_its_user_and_type() -> None:
    settings = make_settings()
    user_id = uuid.uuid4()

    token = make_unsubscribe_token(settings, user_id, MENTION)

    assert read_unsubscribe_token(settings, token) == UnsubscribeTarget(user_id, MENTION)
    assert token == make_unsubscribe_token(settings, user_id, MENTION), "stable, no expiry"
    assert all(character.isalnum() or character in "-_." for character in token)


def _flip_last_character(text: str) -> str:
    return text[:-1] + ("A" if text[-1] != "A" else "B")


def test_forged_and_damaged_tokens_are_refused() -> None:
    settings = make_settings()
    user_id = uuid.uuid4()
    token = make_unsubscribe_token(settings, user_id, MENTION)
    payload, signature = token.split(".")
    # Another user's or type's payload under this signature.
    other_user = make_unsubscribe_token(settings, uuid.uuid4(), MENTION).split(".")[0]
    other_type = make_unsubscribe_token(settings, user_id, NotificationType.NEW_COMMENT)
    other_key = make_settings(secret_key="another-secret-key-0123456789abcdef0123")

    for forged in [
        f"{other_user}.{signature}",
        f"{other_type.split('.')[0]}.{signature}",
        f"{payload}.{_flip_last_character(signature)}",
        f"{payload}.",
        payload,
        "",
        "not-a-token",
        f"{payload}.{signature}.extra",
        f"{payload}.{signature}" + "A" * 300,
        token.replace("-", "+").replace("_", "/"),
    ]:
        if forged == token:
            continue
        assert read_unsubscribe_token(settings, forged) is None, forged
    assert read_unsubscribe_token(other_key, token) is None


# ---------------------------------------------------------------------------- the routes


@pytest.fixture
async def email_sender(smtp_server: SmtpServer) -> AsyncIterator[EmailSender]:
    sender = EmailSender(smtp_server.settings())
    yield sender
    await sender.close()


async def emailed_unsubscribe_path(
    runtime: Runtime, smtp_server: SmtpServer, sender: EmailSender, member: Member
) -> str:
    """Send ``member`` a real new_mention email; return the path of its List-Unsubscribe URL."""
    notification = Notification(
        id=uuid.uuid4(),
        tenant_id=member.tenant_id,
        user_id=member.id,
        type=MENTION.value,
        channel="in_app",
        title="Leyla mentioned you",
        message="…in “Summer campaign”.",
        event_id=uuid.uuid4(),
    )
    settings = smtp_server.settings()
    assert settings.secret_key == runtime.settings.secret_key  # the API must accept the token
    result = await sender.send(
        DeliveryContext(
            delivery_id=uuid.uuid4(),
            attempt=1,
            notification=notification,
            user=member.user,
            settings=settings,
            sessionmaker=async_sessionmaker(),
        )
    )
    assert result.outcome is Outcome.SENT
    header = smtp_server.received[-1].message["List-Unsubscribe"]
    assert header.startswith("<")
    assert header.endswith(">")
    url = urlsplit(header[1:-1])
    assert f"{url.scheme}://{url.netloc}" == settings.public_url
    return url.path


async def preferences_of(
    runtime: Runtime, member: Member
) -> dict[NotificationType, PreferenceUpdate]:
    async with runtime.sessionmaker() as session:
        preferences = await runtime.notification_service(session).get_preferences(member.id)
    return {preference.notification_type: preference for preference in preferences}


async def audit_entries(runtime: Runtime) -> list[AuditLog]:
    async with runtime.sessionmaker() as session:
        return list((await session.scalars(select(AuditLog))).all())


async def test_one_click_post_from_the_email_turns_off_that_type_only(
    runtime: Runtime,
    client: httpx.AsyncClient,
    make_member: MakeMember,
    smtp_server: SmtpServer,
    email_sender: EmailSender,
) -> None:
    member = await make_member()
    path = await emailed_unsubscribe_path(runtime, smtp_server, email_sender, member)
    before = await preferences_of(runtime, member)
    assert before[MENTION].email_enabled

    response = await client.post(path, data=ONE_CLICK)

    assert response.status_code == 200, response.text
    assert "You are unsubscribed" in response.text
    after = await preferences_of(runtime, member)
    assert after[MENTION] == PreferenceUpdate(
        MENTION,
        in_app_enabled=before[MENTION].in_app_enabled,
        email_enabled=False,
        push_enabled=before[MENTION].push_enabled,
    )
    assert {t: p for t, p in after.items() if t is not MENTION} == {
        t: p for t, p in before.items() if t is not MENTION
    }
    [entry] = await audit_entries(runtime)
    assert entry.action == "notification_preference.updated"
    assert entry.actor_id == member.id
    assert entry.tenant_id == member.tenant_id
    assert entry.subject_id == f"{member.id}:{MENTION.value}"
    assert entry.before is not None
    assert entry.before["email_enabled"] is True
    assert entry.after == {"in_app_enabled": True, "email_enabled": False, "push_enabled": True}

    again = await client.post(path, data=ONE_CLICK)
    assert again.status_code == 200
    assert len(await audit_entries(runtime)) == 1, "an unchanged preference is not audited again"


async def test_get_shows_a_confirmation_and_changes_nothing(
    runtime: Runtime,
    client: httpx.AsyncClient,
    make_member: MakeMember,
    smtp_server: SmtpServer,
    email_sender: EmailSender,
) -> None:
    member = await make_member(email="ada@acme.example")
    path = await emailed_unsubscribe_path(runtime, smtp_server, email_sender, member)
    before = await preferences_of(runtime, member)

    response = await client.get(path)

    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    assert response.headers["cache-control"] == "no-store"
    page = response.text
    assert "Stop emails about “New mention” to a***@acme.example?" in page
    assert '<form method="post"' in page
    assert '<input type="hidden" name="List-Unsubscribe" value="One-Click">' in page
    assert await preferences_of(runtime, member) == before
    assert await audit_entries(runtime) == []


async def test_keeps_the_other_flags_of_the_type_as_they_are(
    runtime: Runtime, client: httpx.AsyncClient, make_member: MakeMember
) -> None:
    member = await make_member()
    async with runtime.sessionmaker() as session:
        service = runtime.notification_service(session)
        actor = Actor(user_id=member.id, tenant_id=member.tenant_id)
        await service.update_preference(
            member.id, MENTION, in_app=False, email=True, push=False, actor=actor
        )
        await commit(session)
    token = make_unsubscribe_token(runtime.settings, member.id, MENTION)

    # RFC 8058 also allows the one-click body as multipart/form-data.
    response = await client.post(
        f"/unsubscribe/{token}", files={"List-Unsubscribe": (None, "One-Click")}
    )

    assert response.status_code == 200
    assert (await preferences_of(runtime, member))[MENTION] == PreferenceUpdate(
        MENTION, in_app_enabled=False, email_enabled=False, push_enabled=False
    )


async def test_pages_speak_the_users_language(
    runtime: Runtime, client: httpx.AsyncClient, make_member: MakeMember
) -> None:
    member = await make_member(locale="az")
    path = f"/unsubscribe/{make_unsubscribe_token(runtime.settings, member.id, MENTION)}"

    confirm = await client.get(path)
    done = await client.post(path, data=ONE_CLICK)

    assert '<html lang="az">' in confirm.text
    assert "“Sizi qeyd etdilər” bildirişləri ilə bağlı e-poçtların" in confirm.text
    assert ">Abunəlikdən çıx</button>" in confirm.text
    assert "Abunəlikdən çıxdınız" in done.text
    assert "Artıq “Sizi qeyd etdilər” bildirişləri ilə bağlı e-poçt almayacaqsınız." in done.text


@pytest.mark.parametrize("method", ["GET", "POST"])
async def test_forged_or_unknown_tokens_are_not_found(
    runtime: Runtime, client: httpx.AsyncClient, make_member: MakeMember, method: str
) -> None:
    member = await make_member()
    genuine = make_unsubscribe_token(runtime.settings, member.id, MENTION)
    forged = make_unsubscribe_token(
        make_settings(secret_key="an-attackers-guess-0123456789abcdef0123"), member.id, MENTION
    )
    nobody = make_unsubscribe_token(runtime.settings, uuid.uuid4(), MENTION)

    for token in [forged, nobody, genuine[:-2], "garbage"]:
        response = await client.request(method, f"/unsubscribe/{token}", data=ONE_CLICK)
        assert response.status_code == 404, token
        assert response.json()["error"]["code"] == "not_found"
    assert (await preferences_of(runtime, member))[MENTION].email_enabled
    assert await audit_entries(runtime) == []


# ---------------------------------------------------------------------------- the rule, no HTTP


async def test_unsubscribe_turns_off_the_email_of_the_type_and_records_who_and_where(
    runtime: Runtime, make_member: MakeMember
) -> None:
    member = await make_member()
    token = make_unsubscribe_token(runtime.settings, member.id, MENTION)
    async with runtime.sessionmaker() as session:
        target, user = await unsubscribe_service.unsubscribe(
            runtime.settings,
            session,
            runtime.notification_service(session),
            token,
            ip_address="203.0.113.7",
        )
        await commit(session)

    assert target == UnsubscribeTarget(member.id, MENTION)
    assert user.id == member.id
    assert not (await preferences_of(runtime, member))[MENTION].email_enabled
    [entry] = await audit_entries(runtime)
    assert (entry.actor_id, entry.tenant_id, entry.ip_address) == (
        member.id,
        member.tenant_id,
        "203.0.113.7",
    )


async def test_a_user_of_several_tenants_is_unsubscribed_under_none_of_them(
    runtime: Runtime, make_member: MakeMember
) -> None:
    member = await make_member("acme", email="ada@example.com")
    await make_member("globex", email="ada@example.com")
    token = make_unsubscribe_token(runtime.settings, member.id, MENTION)
    async with runtime.sessionmaker() as session:
        assert await unsubscribe_service.only_tenant_of(session, member.id) is None
        await unsubscribe_service.unsubscribe(
            runtime.settings,
            session,
            runtime.notification_service(session),
            token,
            ip_address=None,
        )
        await commit(session)

    [entry] = await audit_entries(runtime)
    assert entry.actor_id == member.id
    assert entry.tenant_id is None


async def test_resolving_a_token_of_a_deleted_user_is_not_found(runtime: Runtime) -> None:
    token = make_unsubscribe_token(runtime.settings, uuid.uuid4(), MENTION)
    async with runtime.sessionmaker() as session:
        with pytest.raises(NotFound, match="not valid"):
            await unsubscribe_service.resolve(runtime.settings, session, token)
        with pytest.raises(NotFound, match="not valid"):
            await unsubscribe_service.resolve(runtime.settings, session, "garbage")
