// The official Node server SDK (npm `pusher`) as a one-shot CLI, for notiflow's realtime tests.
//
//   node sdk.mjs '<config JSON>' '<action JSON>'
//
// config: {appId, key, secret, host, port, useTLS: false, encryptionMasterKeyBase64?, timeout?}
// action: {"action": "trigger", "channel" | "channels", "event", "data", "socket_id"?, "info"?}
//         {"action": "triggerBatch", "batch": [{channel, name, data, socket_id?, info?}]}
//         {"action": "channels", "params"?: {filter_by_prefix?, info?}}
//         {"action": "channel", "channel", "params"?: {info?}}
//         {"action": "users", "channel"}
//         {"action": "sendToUser", "user_id", "event", "data"}
//         {"action": "terminateUserConnections", "user_id"}
//         {"action": "get" | "post", "path", "params"?, "body"?}     (any other API call)
//         {"action": "authorizeChannel", "socket_id", "channel", "presenceData"?}   (no HTTP)
//         {"action": "authenticateUser", "socket_id", "userData"}                   (no HTTP)
//         {"action": "webhook", "headers", "body"}       (verify a webhook we received)
//
// Prints one JSON line: {"ok", "status", "body", "url"} for HTTP calls (body parsed as JSON when
// it is JSON; "error" when no answer came), {"ok": true, "result"} for local ones. Exit code 0
// whenever a line was printed, 2 for a bad invocation.

import Pusher from "pusher";

function print(message) {
  process.stdout.write(JSON.stringify(message) + "\n");
}

function fail(message) {
  process.stderr.write(`sdk.mjs: ${message}\n`);
  process.exit(2);
}

function parse(text) {
  try {
    return JSON.parse(text);
  } catch {
    return text;
  }
}

let config;
let action;
try {
  config = JSON.parse(process.argv[2] ?? "");
  action = JSON.parse(process.argv[3] ?? "");
} catch (error) {
  fail(`usage: node sdk.mjs '<config JSON>' '<action JSON>' (${error.message})`);
}

const pusher = new Pusher({
  appId: String(config.appId),
  key: config.key,
  secret: config.secret,
  host: config.host ?? "127.0.0.1",
  port: config.port,
  useTLS: config.useTLS ?? false,
  ...(config.encryptionMasterKeyBase64
    ? { encryptionMasterKeyBase64: config.encryptionMasterKeyBase64 }
    : {}),
  ...(config.timeout ? { timeout: config.timeout } : {}),
});

async function http(request) {
  try {
    const response = await request();
    const text = await response.text();
    print({ ok: true, status: response.status, body: parse(text), url: response.url });
  } catch (error) {
    if (error && error.name === "PusherRequestError") {
      print({
        ok: false,
        status: error.status ?? null,
        body: error.body === undefined ? null : parse(error.body),
        url: error.url,
        ...(error.status === undefined ? { error: String(error.error ?? error.message) } : {}),
      });
    } else {
      // The SDK validates names, sizes and socket ids before sending; report that refusal.
      print({ ok: false, status: null, body: null, error: String(error?.message ?? error) });
    }
  }
}

function channelPath(name) {
  return "/channels/" + encodeURIComponent(name);
}

const params = action.params ?? {};
switch (action.action) {
  case "trigger": {
    const extra = {};
    if (action.socket_id !== undefined) extra.socket_id = action.socket_id;
    if (action.info !== undefined) extra.info = action.info;
    await http(() =>
      pusher.trigger(action.channels ?? action.channel, action.event, action.data, extra),
    );
    break;
  }
  case "triggerBatch":
    await http(() => pusher.triggerBatch(action.batch));
    break;
  case "channels":
    await http(() => pusher.get({ path: "/channels", params }));
    break;
  case "channel":
    await http(() => pusher.get({ path: channelPath(action.channel), params }));
    break;
  case "users":
    await http(() => pusher.get({ path: channelPath(action.channel) + "/users", params }));
    break;
  case "sendToUser":
    await http(() => pusher.sendToUser(action.user_id, action.event, action.data));
    break;
  case "terminateUserConnections":
    await http(() => pusher.terminateUserConnections(action.user_id));
    break;
  case "get":
    await http(() => pusher.get({ path: action.path, params }));
    break;
  case "post":
    await http(() => pusher.post({ path: action.path, params, body: action.body ?? {} }));
    break;
  case "authorizeChannel":
    print({
      ok: true,
      result: pusher.authorizeChannel(action.socket_id, action.channel, action.presenceData),
    });
    break;
  case "authenticateUser":
    print({ ok: true, result: pusher.authenticateUser(action.socket_id, action.userData) });
    break;
  case "webhook": {
    const headers = Object.fromEntries(
      Object.entries(action.headers ?? {}).map(([k, v]) => [k.toLowerCase(), v]),
    );
    const webhook = pusher.webhook({ headers, rawBody: action.body ?? "" });
    const valid = webhook.isValid();
    print({
      ok: true,
      result: {
        valid,
        events: valid ? webhook.getEvents() : null,
        time: valid ? webhook.getTime().toISOString() : null,
      },
    });
    break;
  }
  default:
    fail(`unknown action ${JSON.stringify(action.action)}`);
}
