"""The Pusher protocol core, frame by frame, without sockets."""

from __future__ import annotations

import json

import pytest

from notiflow.realtime.protocol import (
    Close,
    ErrorCode,
    Join,
    Leave,
    Member,
    ProtocolConfig,
    PusherConnection,
    Send,
    SignIn,
    Whisper,
    presence_data,
    subscription_succeeded,
)
from notiflow.realtime.signing import channel_auth, user_auth

KEY, SECRET, SOCKET = "app-key", "app-secret-0123456789", "123.456"


def connection(**config: object) -> PusherConnection:
    return PusherConnection(SOCKET, ProtocolConfig(KEY, SECRET, **config), now=0.0)  # type: ignore[arg-type]


def sent(actions: list) -> list[dict]:
    return [json.loads(action.frame) for action in actions if isinstance(action, Send)]


def subscribe(channel: str, auth: str | None = None, channel_data: str | None = None) -> str:
    data: dict[str, str] = {"channel": channel}
    if auth is not None:
        data["auth"] = auth
    if channel_data is not None:
        data["channel_data"] = channel_data
    return json.dumps({"event": "pusher:subscribe", "data": data})


def test_handshake_carries_socket_id_and_activity_timeout_as_a_json_string() -> None:
    [established] = sent(connection(activity_timeout=30).open())
    assert established["event"] == "pusher:connection_established"
    assert isinstance(established["data"], str)
    assert json.loads(established["data"]) == {"socket_id": SOCKET, "activity_timeout": 30}


def test_ping_gets_pong() -> None:
    assert sent(connection().receive('{"event":"pusher:ping","data":{}}', 1.0)) == [
        {"event": "pusher:pong", "data": {}}
    ]


def test_public_subscription_joins_without_auth() -> None:
    assert connection().receive(subscribe("news"), 1.0) == [Join("news")]


def test_private_subscription_with_a_valid_signature() -> None:
    conn = connection()
    auth = channel_auth(KEY, SECRET, SOCKET, "private-notifications.7")
    assert conn.receive(subscribe("private-notifications.7", auth), 1.0) == [
        Join("private-notifications.7")
    ]


@pytest.mark.parametrize(
    "auth",
    [
        None,
        "app-key:deadbeef",
        channel_auth(KEY, "wrong-secret", SOCKET, "private-notifications.7"),
        # a signature for another socket (replayed from someone else's connection)
        channel_auth(KEY, SECRET, "999.999", "private-notifications.7"),
        # a signature for another channel
        channel_auth(KEY, SECRET, SOCKET, "private-notifications.8"),
    ],
)
def test_bad_private_auth_is_a_subscription_error(auth: str | None) -> None:
    conn = connection()
    [error] = sent(conn.receive(subscribe("private-notifications.7", auth), 1.0))
    assert error == {
        "event": "pusher:subscription_error",
        "channel": "private-notifications.7",
        "data": {"type": "AuthError", "error": "Invalid signature", "status": 401},
    }
    assert conn.subscriptions == {}


@pytest.mark.parametrize("user_id", [42, "42", "ada"])
def test_presence_subscription_carries_the_member_with_its_id_type(user_id: int | str) -> None:
    channel_data = json.dumps({"user_id": user_id, "user_info": {"name": "Ada"}})
    auth = channel_auth(KEY, SECRET, SOCKET, "presence-room", channel_data)
    actions = connection().receive(subscribe("presence-room", auth, channel_data), 1.0)
    assert actions == [Join("presence-room", Member(user_id, {"name": "Ada"}))]
    [join] = actions
    assert isinstance(join, Join)
    assert join.member is not None
    assert type(join.member.user_id) is type(user_id)
    assert join.member.key == str(user_id)


def test_presence_data_keeps_id_types_and_keys_the_hash_by_their_string_form() -> None:
    members = {"42": Member(42, {"name": "Ada"}), "bob": Member("bob", {"name": "Bob"})}
    assert json.loads(json.dumps(presence_data(members))) == {
        "ids": [42, "bob"],
        "hash": {"42": {"name": "Ada"}, "bob": {"name": "Bob"}},
        "count": 2,
    }


@pytest.mark.parametrize(
    "channel_data",
    [
        '{"user_info":{}}',
        "not json",
        "[1, 2]",
        '{"user_id":""}',
        '{"user_id":true}',
        '{"user_id":1.5}',
        '{"user_id":{"id":1}}',
    ],
)
def test_presence_channel_data_without_a_usable_user_id_is_malformed(channel_data: str) -> None:
    conn = connection()
    auth = channel_auth(KEY, SECRET, SOCKET, "presence-room", channel_data)
    actions = conn.receive(subscribe("presence-room", auth, channel_data), 1.0)
    [error] = sent(actions)
    assert error["event"] == "pusher:error"
    assert error["channel"] == "presence-room"
    assert error["data"]["code"] == ErrorCode.RECONNECT
    assert not any(isinstance(action, Close | Join) for action in actions)
    assert conn.subscriptions == {}
    assert conn.receive(subscribe("news"), 2.0) == [Join("news")], "the connection stays usable"


@pytest.mark.parametrize(
    ("data", "problem"),
    [
        ({"channel": "private-chat", "auth": 12345}, "auth must be a string"),
        ({"channel": "private-chat", "auth": ["app-key:sig"]}, "auth must be a string"),
        (
            {"channel": "presence-room", "auth": "app-key:sig", "channel_data": {"user_id": 1}},
            "channel_data must be a string",
        ),
        ({"channel": "news", "channel_data": 7}, "channel_data must be a string"),
    ],
)
def test_malformed_subscribe_fields_are_4200_errors_on_the_channel(
    data: dict[str, object], problem: str
) -> None:
    conn = connection()
    actions = conn.receive(json.dumps({"event": "pusher:subscribe", "data": data}), 1.0)
    [error] = sent(actions)
    assert error == {
        "event": "pusher:error",
        "channel": data["channel"],
        "data": {"code": ErrorCode.RECONNECT, "message": f"Invalid pusher:subscribe: {problem}"},
    }
    assert not any(isinstance(action, Close) for action in actions)
    assert conn.subscriptions == {}
    assert conn.receive(subscribe("news"), 2.0) == [Join("news")], "the connection stays usable"


@pytest.mark.parametrize("data", [{"channel": 42}, {"channel": None}, {"auth": "x"}, "news"])
def test_a_subscribe_without_a_channel_name_is_a_4200_error(data: object) -> None:
    conn = connection()
    actions = conn.receive(json.dumps({"event": "pusher:subscribe", "data": data}), 1.0)
    [error] = sent(actions)
    assert error["event"] == "pusher:error"
    assert error["data"]["code"] == ErrorCode.RECONNECT
    assert not conn.closed


def test_presence_member_info_is_size_limited() -> None:
    channel_data = json.dumps({"user_id": "1", "user_info": {"bio": "x" * 3000}})
    auth = channel_auth(KEY, SECRET, SOCKET, "presence-room", channel_data)
    [error] = sent(connection().receive(subscribe("presence-room", auth, channel_data), 1.0))
    assert error["data"]["type"] == "LimitReached"
    assert error["data"]["status"] == 4301, "too big to ever fit: not worth retrying"


@pytest.mark.parametrize(
    ("channel", "error_type"),
    [
        ("has space", "InvalidChannel"),
        ("emoji-😀", "InvalidChannel"),
        ("", "InvalidChannel"),
        ("x" * 201, "LimitReached"),
        ("private-" + "x" * 5000, "LimitReached"),
    ],
)
def test_invalid_channel_names_are_refused_for_the_name_sent(channel: str, error_type: str) -> None:
    [error] = sent(connection().receive(subscribe(channel), 1.0))
    assert error["event"] == "pusher:subscription_error"
    assert error["channel"] == channel, "pusher-js routes the answer by the exact name"
    assert error["data"]["type"] == error_type
    assert error["data"]["status"] == 4009, "the same name will never work"


@pytest.mark.parametrize(
    "payload",
    [
        "not json",
        "[1,2,3]",
        '{"data":{}}',
        '{"event":42}',
        '{"event":"pusher:subscribe","data":"private-x"}',
        b"\xff\xfe",
    ],
)
def test_malformed_frames_get_an_error_and_keep_the_connection(payload: str | bytes) -> None:
    conn = connection()
    actions = conn.receive(payload, 1.0)
    [error] = sent(actions)
    assert error["event"] == "pusher:error"
    assert error["data"]["code"] == ErrorCode.RECONNECT
    assert not any(isinstance(action, Close) for action in actions)
    assert not conn.closed


@pytest.mark.parametrize(
    "payload",
    ["[" * 5000, '{"event":"pusher:ping","data":' + "[" * 9000, '{"a":' * 1900],
)
def test_deeply_nested_json_is_an_error_not_a_crash(payload: str) -> None:
    conn = connection()
    actions = conn.receive(payload, 1.0)
    [error] = sent(actions)
    assert error["data"]["code"] == ErrorCode.RECONNECT
    assert "nested too deeply" in error["data"]["message"]
    assert not any(isinstance(action, Close) for action in actions)
    assert sent(conn.receive('{"event":"pusher:ping","data":{}}', 2.0))[0]["event"] == "pusher:pong"


def test_subscriptions_per_connection_are_capped() -> None:
    conn = connection(max_channels_per_connection=3)
    for name in ("a", "b", "c"):
        assert conn.receive(subscribe(name), 1.0) == [Join(name)]
    [error] = sent(conn.receive(subscribe("d"), 1.0))
    assert error["event"] == "pusher:subscription_error"
    assert error["channel"] == "d"
    assert error["data"]["type"] == "LimitReached"
    assert error["data"]["status"] == 4100, "over capacity: works once room is made"
    assert "at most 3 channels" in error["data"]["error"]
    assert set(conn.subscriptions) == {"a", "b", "c"}
    # subscribing again to a channel already held is not one more; leaving makes room
    assert conn.receive(subscribe("a"), 1.0) == [Join("a")]
    conn.receive(json.dumps({"event": "pusher:unsubscribe", "data": {"channel": "b"}}), 1.0)
    assert conn.receive(subscribe("d"), 1.0) == [Join("d")]


def test_unknown_events_are_answered_not_fatal() -> None:
    [error] = sent(connection().receive('{"event":"pusher:launch_missiles"}', 1.0))
    assert "Unsupported event" in error["data"]["message"]


def test_oversize_messages_are_refused() -> None:
    conn = connection(max_message_bytes=1000)
    [error] = sent(conn.receive(json.dumps({"event": "pusher:ping", "pad": "x" * 2000}), 1.0))
    assert error["data"]["code"] == ErrorCode.CLIENT_EVENT_REJECTED
    assert "too large" in error["data"]["message"]
    assert "channel" not in error


def test_an_oversize_client_event_is_refused_on_its_channel() -> None:
    conn = connection(max_message_bytes=1000)
    _private(conn)
    message = json.dumps(
        {"event": "client-typing", "data": {"text": "x" * 2000}, "channel": "private-chat"}
    )
    actions = conn.receive(message, 1.0)
    [error] = sent(actions)
    assert error["event"] == "pusher:error"
    assert error["channel"] == "private-chat"
    assert error["data"]["code"] == ErrorCode.CLIENT_EVENT_REJECTED
    assert "too large" in error["data"]["message"]
    assert not any(isinstance(action, Whisper) for action in actions)


def test_unsubscribe_leaves_with_the_member() -> None:
    channel_data = '{"user_id":"7"}'
    conn = connection()
    conn.receive(
        subscribe(
            "presence-room",
            channel_auth(KEY, SECRET, SOCKET, "presence-room", channel_data),
            channel_data,
        ),
        1.0,
    )
    actions = conn.receive('{"event":"pusher:unsubscribe","data":{"channel":"presence-room"}}', 2)
    assert actions == [Leave("presence-room", Member("7", None))]
    assert conn.receive('{"event":"pusher:unsubscribe","data":{"channel":"nope"}}', 3) == []


def _private(conn: PusherConnection, channel: str = "private-chat") -> None:
    conn.receive(subscribe(channel, channel_auth(KEY, SECRET, SOCKET, channel)), 0.0)


def client_event(channel: str = "private-chat", event: str = "client-typing") -> str:
    return json.dumps({"event": event, "channel": channel, "data": {"typing": True}})


def test_client_event_is_relayed_on_private_channels() -> None:
    conn = connection()
    _private(conn)
    [whisper] = conn.receive(client_event(), 1.0)
    assert isinstance(whisper, Whisper)
    assert whisper.channel == "private-chat"
    assert json.loads(whisper.frame) == {
        "event": "client-typing",
        "channel": "private-chat",
        "data": {"typing": True},
    }


@pytest.mark.parametrize(
    ("setup", "channel", "message", "reason"),
    [
        ("news", "news", client_event("news"), "only allowed on private and presence"),
        (None, "private-chat", client_event(), "subscribed to"),
        (
            "private-chat",
            "private-chat",
            client_event(event="client-" + "x" * 200),
            "at most 200",
        ),
    ],
)
def test_client_events_that_are_refused_name_their_channel(
    setup: str | None, channel: str, message: str, reason: str
) -> None:
    conn = connection()
    if setup == "news":
        conn.receive(subscribe("news"), 0.0)
    elif setup is not None:
        _private(conn, setup)
    [error] = sent(conn.receive(message, 1.0))
    assert error["event"] == "pusher:error"
    assert error["channel"] == channel, "so channel.bind('pusher:error') hears it"
    assert error["data"]["code"] == ErrorCode.CLIENT_EVENT_REJECTED
    assert reason in error["data"]["message"]


def test_a_refused_client_event_with_no_usable_channel_names_none() -> None:
    conn = connection()
    for channel in (None, 42, "x" * 5000):
        message = json.dumps({"event": "client-typing", "channel": channel, "data": {}})
        [error] = sent(conn.receive(message, 1.0))
        assert error["data"]["code"] == ErrorCode.CLIENT_EVENT_REJECTED
        assert "channel" not in error


def test_client_events_can_be_disabled() -> None:
    conn = connection(client_events=False)
    _private(conn)
    [error] = sent(conn.receive(client_event(), 1.0))
    assert "disabled" in error["data"]["message"]
    assert error["channel"] == "private-chat"


def test_client_event_rate_limit_then_flood_close() -> None:
    conn = connection(client_event_rate=10, client_event_flood_limit=20)
    _private(conn)
    # 10 pass in the first instant, the 11th is refused
    results = [conn.receive(client_event(), 1.0) for _ in range(11)]
    assert all(isinstance(result[0], Whisper) for result in results[:10])
    [refused] = sent(results[10])
    assert refused["data"]["code"] == ErrorCode.CLIENT_EVENT_REJECTED
    assert refused["channel"] == "private-chat"
    # after a second the bucket is full again
    assert isinstance(conn.receive(client_event(), 2.0)[0], Whisper)
    # a client that keeps flooding is disconnected with 4301 and leaves its channels
    actions: list = []
    for _ in range(40):
        actions = conn.receive(client_event(), 2.0)
        if any(isinstance(action, Close) for action in actions):
            break
    assert Close(ErrorCode.CLIENT_EVENT_REJECTED, "Too many rejected client events") in actions
    assert Leave("private-chat", None) in actions
    assert conn.closed
    assert conn.receive(client_event(), 3.0) == []


@pytest.mark.parametrize("user_id", ["9", 9])
def test_presence_client_events_carry_the_user_id_with_its_type(user_id: int | str) -> None:
    channel_data = json.dumps({"user_id": user_id})
    conn = connection()
    conn.receive(
        subscribe(
            "presence-room",
            channel_auth(KEY, SECRET, SOCKET, "presence-room", channel_data),
            channel_data,
        ),
        0.0,
    )
    [whisper] = conn.receive(client_event("presence-room"), 1.0)
    assert isinstance(whisper, Whisper)
    relayed = json.loads(whisper.frame)["user_id"]
    assert relayed == user_id
    assert type(relayed) is type(user_id)


def test_idle_client_is_pinged_then_closed_with_4201() -> None:
    conn = connection(ping_after=45, pong_timeout=30)
    _private(conn)
    assert conn.tick(44.0) == []
    assert sent(conn.tick(45.0)) == [{"event": "pusher:ping", "data": {}}]
    assert conn.tick(60.0) == []
    actions = conn.tick(75.0)
    assert actions[0] == Close(ErrorCode.PONG_TIMEOUT, "Pong reply not received in time")
    assert Leave("private-chat", None) in actions


def test_any_message_counts_as_alive() -> None:
    conn = connection(ping_after=45, pong_timeout=30)
    conn.tick(45.0)
    conn.receive('{"event":"pusher:pong","data":{}}', 50.0)
    assert conn.tick(80.0) == []
    assert sent(conn.tick(95.0)) == [{"event": "pusher:ping", "data": {}}]


def test_disconnect_leaves_every_channel_once() -> None:
    conn = connection()
    _private(conn, "private-a")
    _private(conn, "private-b")
    assert conn.disconnected() == [Leave("private-a", None), Leave("private-b", None)]
    assert conn.disconnected() == []


# ---------------------------------------------------------------------------- user sign-in


def signin(user_data: str, auth: str | None = None, socket_id: str = SOCKET) -> str:
    signed = auth if auth is not None else user_auth(KEY, SECRET, socket_id, user_data)
    return json.dumps({"event": "pusher:signin", "data": {"auth": signed, "user_data": user_data}})


def test_a_valid_signin_joins_the_users_channel_then_answers_signin_success() -> None:
    conn = connection()
    user_data = '{"id":"42","user_info":{"name":"Ada"}}'
    [action] = conn.receive(signin(user_data), 1.0)
    assert isinstance(action, SignIn)
    assert (action.user_id, action.channel) == ("42", "#server-to-user-42")
    # pusher-js reads data.user_data (the signed text, byte for byte)
    assert json.loads(action.frame) == {
        "event": "pusher:signin_success",
        "data": {"user_data": user_data},
    }
    assert conn.user_id == "42"
    # the connection leaves the user's channel with the rest when it goes
    assert conn.disconnected() == [Leave("#server-to-user-42")]


@pytest.mark.parametrize(
    "auth",
    [
        "app-key:deadbeef",
        user_auth(KEY, "wrong-secret", SOCKET, '{"id":"42"}'),
        # signed for another socket (replayed from someone else's connection)
        user_auth(KEY, SECRET, "999.999", '{"id":"42"}'),
        # signed for other user data
        user_auth(KEY, SECRET, SOCKET, '{"id":"43"}'),
    ],
)
def test_a_forged_signin_is_refused_with_4009_and_closed(auth: str) -> None:
    conn = connection()
    conn.receive(subscribe("news"), 1.0)
    actions = conn.receive(signin('{"id":"42"}', auth), 1.0)
    [error] = sent(actions)
    assert error["event"] == "pusher:error"
    assert error["data"]["code"] == 4009
    assert Close(4009, "Connection not authorized: invalid signature") in actions
    assert Leave("news") in actions
    assert conn.user_id is None
    assert conn.receive(signin('{"id":"42"}'), 2.0) == []  # closed: nothing more


@pytest.mark.parametrize(
    "user_data",
    [
        "not json",
        "[]",
        "{}",
        '{"id":""}',
        '{"id":null}',
        '{"id":true}',
        '{"id":4.2}',
        json.dumps({"id": "a\nb"}),
        json.dumps({"id": "a" * 201}),
    ],
)
def test_signed_user_data_without_a_usable_id_is_refused_with_4009(user_data: str) -> None:
    actions = connection().receive(signin(user_data), 1.0)
    [error] = sent(actions)
    assert error["data"]["code"] == 4009
    assert [action.code for action in actions if isinstance(action, Close)] == [4009]


@pytest.mark.parametrize(
    "data", [None, "text", {"auth": "k:s"}, {"user_data": "{}"}, {"auth": 1, "user_data": "{}"}]
)
def test_a_malformed_signin_is_answered_4200_and_the_connection_stays(data: object) -> None:
    conn = connection()
    [error] = sent(conn.receive(json.dumps({"event": "pusher:signin", "data": data}), 1.0))
    assert error["data"]["code"] == 4200
    assert "pusher:signin" in error["data"]["message"]
    assert not conn.closed


def test_a_numeric_id_signs_in_as_its_string_form() -> None:
    """As Soketi takes it: a backend returning its numeric primary key keeps its connection."""
    conn = connection()
    [action] = conn.receive(signin('{"id":42,"name":"Ada"}'), 1.0)
    assert isinstance(action, SignIn)
    assert (action.user_id, action.channel) == ("42", "#server-to-user-42")
    assert json.loads(action.frame)["data"] == {"user_data": '{"id":42,"name":"Ada"}'}


def test_signing_in_as_another_user_leaves_the_first_users_channel() -> None:
    conn = connection()
    conn.receive(signin('{"id":"42"}'), 1.0)
    # the same user again: answered, nothing joined twice
    again = conn.receive(signin('{"id":"42"}'), 2.0)
    assert [type(action) for action in again] == [Send]
    assert sent(again)[0]["event"] == "pusher:signin_success"
    other = conn.receive(signin('{"id":"43"}'), 3.0)
    assert other[0] == Leave("#server-to-user-42")
    assert isinstance(other[1], SignIn)
    assert other[1].channel == "#server-to-user-43"


def test_subscribing_to_a_server_to_user_channel_is_acknowledged_without_joining() -> None:
    """pusher-js subscribes to its user's channel after signin_success; the connection joined
    it when it signed in. Anyone else's subscription is answered too but joins nothing, so it
    hears nothing (events go to the signed-in connections)."""
    conn = connection()
    for channel in ("#server-to-user-42", "#server-to-user-someone-else"):
        assert conn.receive(subscribe(channel, ""), 1.0) == [Send(subscription_succeeded(channel))]
    assert conn.subscriptions == {}
    # unsubscribing does not sign out
    conn.receive(signin('{"id":"42"}'), 1.0)
    assert (
        conn.receive('{"event":"pusher:unsubscribe","data":{"channel":"#server-to-user-42"}}', 2.0)
        == []
    )
    assert conn.user_id == "42"
    # other names starting with "#" are still not channel names
    [refusal] = sent(conn.receive(subscribe("#other"), 3.0))
    assert refusal["event"] == "pusher:subscription_error"


def test_terminate_closes_with_4009_and_leaves_everything() -> None:
    conn = connection()
    conn.receive(subscribe("news"), 1.0)
    conn.receive(signin('{"id":"42"}'), 1.0)
    actions = conn.terminate()
    [error] = sent(actions)
    assert error["data"]["code"] == 4009
    assert Close(4009, "You got disconnected by the app") in actions
    assert set(action for action in actions if isinstance(action, Leave)) == {
        Leave("news"),
        Leave("#server-to-user-42"),
    }
    assert conn.terminate() == []


def test_without_a_signin_timeout_an_unsigned_connection_is_never_closed_for_it() -> None:
    conn = connection()
    conn.receive('{"event":"pusher:ping"}', 1_000.0)
    assert conn.tick(1_000.5) == []


def test_the_signin_timeout_closes_an_unsigned_connection_with_4009() -> None:
    conn = connection(user_auth_timeout=30.0)
    assert conn.tick(29.9) == []
    actions = conn.tick(30.0)
    [error] = sent(actions)
    assert error["data"] == {"code": 4009, "message": "Connection not authorized within timeout"}
    assert Close(4009, "Connection not authorized within timeout") in actions
    assert conn.tick(31.0) == []


def test_the_signin_timeout_spares_a_signed_in_connection() -> None:
    conn = connection(user_auth_timeout=30.0)
    conn.receive(signin('{"id":"42"}'), 5.0)
    assert conn.tick(30.0) == []
    assert conn.tick(49.0) == []  # and not for being signed in long
