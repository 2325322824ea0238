"""Signatures match the official pusher SDKs (vectors computed with npm pusher 5.3.4 and PyPI
pusher 3.3.4)."""

from __future__ import annotations

import pusher

from notiflow.realtime.signing import (
    body_md5,
    channel_auth,
    request_signature,
    user_auth,
    verify_user_auth,
)


def test_private_channel_signature() -> None:
    assert (
        channel_auth("app-key", "app-secret", "1234.5678", "private-notifications.42")
        == "app-key:ab6ca2e2222fd5a0f26f3176c3a272d4f8cca4656ddda4155ebbf3de25cc7498"
    )


def test_presence_channel_signature() -> None:
    channel_data = '{"user_id":"42","user_info":{"name":"Ada"}}'
    assert (
        channel_auth("app-key", "app-secret", "1234.5678", "presence-room.1", channel_data)
        == "app-key:edcfbfbc2552b7bb77e04889be86cdf220b5891994732a64c48d915ff465f6f2"
    )


def test_user_signin_signature_matches_both_sdks() -> None:
    user_data = '{"id":"42","name":"Ada"}'
    expected = "app-key:301c617063a9befe3888bef787d0293388621da80385924cc3b7231582f595e3"
    assert user_auth("app-key", "app-secret", "1234.5678", user_data) == expected
    assert verify_user_auth("app-key", "app-secret", "1234.5678", user_data, expected)
    assert not verify_user_auth("app-key", "app-secret", "1234.5679", user_data, expected)
    client = pusher.Pusher(app_id="12345", key="app-key", secret="app-secret")
    signed = client.authenticate_user("1234.5678", {"id": "42", "name": "Ada"})
    assert verify_user_auth(
        "app-key", "app-secret", "1234.5678", signed["user_data"], signed["auth"]
    )


def test_http_api_signature_of_a_post() -> None:
    body = (
        b'{"name":"NotificationCreated","channels":["private-notifications.42"],'
        b'"data":"{\\"id\\":1}"}'
    )
    assert body_md5(body) == "734de1d3ddcfa88dd151e6657cbf8918"
    params = {
        "auth_key": "app-key",
        "auth_timestamp": "1700000000",
        "auth_version": "1.0",
        "body_md5": "734de1d3ddcfa88dd151e6657cbf8918",
    }
    assert (
        request_signature("app-secret", "POST", "/apps/app-id/events", params)
        == "18148958c0ce4fa579e145742823db646b3874b437126ad6b7f3580298828458"
    )


def test_http_api_signature_of_a_python_sdk_get_with_empty_body_md5() -> None:
    params = {
        "auth_key": "app-key",
        "auth_timestamp": "1700000000",
        "auth_version": "1.0",
        "body_md5": "d41d8cd98f00b204e9800998ecf8427e",
        "filter_by_prefix": "presence-",
        "info": "user_count",
    }
    assert (
        request_signature("app-secret", "GET", "/apps/12345/channels", params)
        == "3f325e38ced3b6e6e5f7cf273cec24c9340a12d864be95f47c23efa00518a743"
    )


def test_agrees_with_the_pypi_sdk_authenticate() -> None:
    client = pusher.Pusher(app_id="12345", key="app-key", secret="app-secret")
    expected = client.authenticate(channel="private-notifications.7", socket_id="99.100")["auth"]
    assert channel_auth("app-key", "app-secret", "99.100", "private-notifications.7") == expected
