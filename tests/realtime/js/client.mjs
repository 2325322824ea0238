// A browser front end in a Node process, for notiflow's realtime tests.
//
//   node client.mjs '<config JSON>'
//
// It connects with the real pusher-js (mode "pusher") or the real Laravel Echo on top of it
// (mode "echo"), reports everything it can observe as one JSON object per stdout line, and takes
// commands as JSON lines on stdin. tests/realtime/node.py drives it; README.md lists the lines.
//
// Config: {wsHost, wsPort, key, authEndpoint, token?, mode: "echo"|"pusher",
//          subscribe: [{kind?, name, listen?, listenForWhisper?, notification?, listenToAll?}],
//          userAuthEndpoint?, signin?: bool (pusher.signin() / Echo's signin() at start),
//          wsPath?, activityTimeout?, pongTimeout?, csrfToken?, namespace?, authHeaders?,
//          signAs?: {secret, user_id?, user_info?} (sign subscriptions here, as a backend's authorizer would),
//          replay?: {userId} (use clients/js/notiflow-replay.js for last_sequence),
//          options?: {extra Pusher/Echo options}, trace?: bool (frames in and out), debug?: bool}
// Commands: {"cmd":"subscribe", ...a subscribe entry}, {"cmd":"leave","channel"},
//           {"cmd":"whisper","channel","event","data"}, {"cmd":"send","event","data","channel"?},
//           {"cmd":"signin"}, {"cmd":"disconnect"}, {"cmd":"connect"}, {"cmd":"state"}, {"cmd":"quit"}

import { createRequire } from "node:module";
import { createInterface } from "node:readline";
import { format } from "node:util";

import Echo, { EventFormatter } from "laravel-echo";
import ServerSdk from "pusher";
import Pusher from "pusher-js";

// stdout carries only our JSON lines: whatever the libraries log goes to stderr.
for (const level of ["log", "info", "debug", "warn", "error", "trace"]) {
  console[level] = (...args) => process.stderr.write(format(...args) + "\n");
}

function plain(value, seen = new WeakSet()) {
  // JSON-safe copy of what a callback received (Errors, Events and cycles included).
  if (value === undefined) return null;
  if (value === null || typeof value !== "object") {
    return typeof value === "function" || typeof value === "symbol" ? String(value) : value;
  }
  if (seen.has(value)) return "[circular]";
  seen.add(value);
  if (value instanceof Error) {
    const out = { name: value.name, message: value.message };
    for (const key of Object.keys(value)) out[key] = plain(value[key], seen);
    return out;
  }
  if (Array.isArray(value)) return value.map((item) => plain(item, seen));
  const out = {};
  for (const key of Object.keys(value)) {
    if (key === "target" || key === "currentTarget" || key === "_target") continue; // sockets
    out[key] = plain(value[key], seen);
  }
  if (Object.keys(out).length === 0 && typeof value.type === "string") {
    // DOM-like events keep their fields on the prototype.
    for (const key of ["type", "code", "reason", "message", "wasClean"]) {
      if (value[key] !== undefined) out[key] = plain(value[key], seen);
    }
  }
  return out;
}

function emit(message) {
  process.stdout.write(JSON.stringify(message) + "\n");
}

let config;
try {
  config = JSON.parse(process.argv[2] ?? "");
} catch (error) {
  process.stderr.write(`client.mjs: argv[2] must be the JSON config (${error.message})\n`);
  process.exit(2);
}

const mode = config.mode ?? "echo";
if (mode !== "echo" && mode !== "pusher") {
  process.stderr.write(`client.mjs: mode must be "echo" or "pusher", not ${mode}\n`);
  process.exit(2);
}

process.on("uncaughtException", (error) => {
  emit({ type: "fatal", error: plain(error), stack: String(error?.stack ?? "") });
  process.exit(1);
});
process.on("unhandledRejection", (error) => {
  emit({ type: "fatal", error: plain(error), stack: String(error?.stack ?? "") });
  process.exit(1);
});

if (config.debug) Pusher.logToConsole = true; // goes to stderr, see above

// --------------------------------------------------------------- socket-level observation

// pusher-js opens every WebSocket through Runtime.createWebSocket; wrapping it shows the URL, the
// close code and (with trace) the raw frames, which the public API hides.
const runtime = Pusher.Runtime;
const createWebSocket = runtime.createWebSocket;
runtime.createWebSocket = function (url) {
  const socket = createWebSocket.call(this, url);
  emit({ type: "socket", url });
  socket.addEventListener("close", (event) => {
    emit({ type: "closed", code: event.code ?? null, reason: event.reason ?? "" });
  });
  if (config.trace) {
    socket.addEventListener("message", (event) => {
      emit({ type: "frame", dir: "in", data: String(event.data) });
    });
    const send = socket.send.bind(socket);
    socket.send = (data) => {
      emit({ type: "frame", dir: "out", data: String(data) });
      return send(data);
    };
  }
  return socket;
};

// The constructor connects at once; binding in connect() (called by the constructor with
// this.connection already built) sees the first "initialized -> connecting" change too.
class ObservedPusher extends Pusher {
  connect() {
    if (!this.__observed) {
      this.__observed = true;
      this.connection.bind("state_change", ({ previous, current }) => {
        const message = { type: "state", previous, current };
        if (current === "connected") message.socket_id = this.connection.socket_id;
        emit(message);
      });
      this.connection.bind("error", (error) => emit({ type: "error", error: plain(error) }));
      this.connection.bind("connecting_in", (delay) => emit({ type: "connecting_in", delay }));
    }
    super.connect();
  }
}

// --------------------------------------------------------------- the client

// signAs: this client signs its own private and presence subscriptions with the app secret, the
// way a backend's authorizer would (the npm server SDK's authorizeChannel), with channel_data
// {user_id, user_info} as given: a presence id can be a number, which /broadcasting/auth never
// hands out.
function signingAuthorizer({ secret, user_id: userId, user_info: userInfo }) {
  const sdk = new ServerSdk({ appId: "1", key: config.key, secret, useTLS: false });
  return ({ socketId, channelName }, callback) => {
    try {
      const presence = channelName.startsWith("presence-")
        ? { user_id: userId, user_info: userInfo ?? {} }
        : undefined;
      callback(null, sdk.authorizeChannel(socketId, channelName, presence));
    } catch (error) {
      callback(error, null);
    }
  };
}

const authHeaders = { ...(config.authHeaders ?? {}) };

function userAuthEndpoint() {
  return config.userAuthEndpoint ?? String(config.authEndpoint).replace(/auth$/, "user-auth");
}
let pusher;
let echo;

// replay: {userId}: the shipped helper (clients/js/notiflow-replay.js) supplies last_sequence,
// exactly as the README tells a front end to use it.
const replay = config.replay
  ? createRequire(import.meta.url)("../../../clients/js/notiflow-replay.js")(config.replay.userId)
  : null;

if (mode === "echo") {
  const options = {
    broadcaster: "pusher",
    key: config.key,
    wsHost: config.wsHost,
    wsPort: config.wsPort,
    forceTLS: false,
    enabledTransports: ["ws"],
    cluster: "mt1",
    authEndpoint: config.authEndpoint,
    bearerToken: config.token ?? null,
    disableStats: true,
    Pusher: ObservedPusher,
    // Echo copies these into the same object for every instance, so give it a fresh one.
    auth: replay ? { headers: { ...authHeaders }, params: replay.params } : { headers: { ...authHeaders } },
    userAuthentication: { endpoint: userAuthEndpoint(), headers: { ...authHeaders } },
  };
  if (config.wsPath !== undefined) options.wsPath = config.wsPath;
  if (config.activityTimeout !== undefined) options.activityTimeout = config.activityTimeout;
  if (config.pongTimeout !== undefined) options.pongTimeout = config.pongTimeout;
  if (config.csrfToken !== undefined) options.csrfToken = config.csrfToken;
  if (config.namespace !== undefined) options.namespace = config.namespace;
  if (config.signAs) options.channelAuthorization = { customHandler: signingAuthorizer(config.signAs) };
  Object.assign(options, config.options ?? {});
  echo = new Echo(options);
  pusher = echo.connector.pusher;
  if (replay) replay.watch(pusher);
} else {
  const headers = { ...authHeaders };
  if (config.token) headers.Authorization = "Bearer " + config.token;
  if (config.csrfToken) headers["X-CSRF-TOKEN"] = config.csrfToken;
  const options = {
    wsHost: config.wsHost,
    wsPort: config.wsPort,
    forceTLS: false,
    enabledTransports: ["ws"],
    cluster: "mt1",
    disableStats: true,
    channelAuthorization: { endpoint: config.authEndpoint, transport: "ajax", headers },
    userAuthentication: { endpoint: userAuthEndpoint(), transport: "ajax", headers: { ...headers } },
  };
  if (config.wsPath !== undefined) options.wsPath = config.wsPath;
  if (config.activityTimeout !== undefined) options.activityTimeout = config.activityTimeout;
  if (config.pongTimeout !== undefined) options.pongTimeout = config.pongTimeout;
  if (config.signAs) options.channelAuthorization.customHandler = signingAuthorizer(config.signAs);
  if (replay) options.channelAuthorization.params = replay.params;
  Object.assign(options, config.options ?? {});
  pusher = new ObservedPusher(config.key, options);
  if (replay) replay.watch(pusher);
}

// User authentication: what pusher-js does with a sign-in, and the events sent to the user.
pusher.connection.bind("message", (message) => {
  if (message.event === "pusher:signin_success") {
    emit({ type: "signed_in", user_data: plain(message.data?.user_data) });
  }
});
pusher.user.bind("pusher:signin_error", (error) => emit({ type: "signin_error", error: plain(error) }));
pusher.user.bind_global((event, data) => {
  if (!event.startsWith("pusher:")) emit({ type: "user_event", event, data: plain(data) });
});

function signin() {
  if (mode === "echo") echo.connector.signin();
  else pusher.signin();
}

const PREFIX = { private: "private-", presence: "presence-", encrypted: "private-encrypted-" };

function kindOf(entry) {
  if (entry.kind) return entry.kind;
  const name = String(entry.name ?? entry.channel ?? "");
  if (name.startsWith("private-encrypted-")) return "encrypted";
  if (name.startsWith("private-")) return "private";
  if (name.startsWith("presence-")) return "presence";
  return "public";
}

function names(entry) {
  // (wire name, Echo name): entries may give either form; Echo adds the prefix itself.
  const kind = kindOf(entry);
  const given = String(entry.name ?? entry.channel ?? "");
  const prefix = PREFIX[kind] ?? "";
  if (kind !== "public" && !(kind in PREFIX)) throw new Error(`unknown channel kind ${kind}`);
  const bare = prefix && given.startsWith(prefix) ? given.slice(prefix.length) : given;
  return { kind, wire: prefix + bare, bare };
}

function member(m) {
  return m ? { id: m.id ?? null, info: plain(m.info) } : null;
}

function subscribeEcho(entry) {
  const { kind, wire, bare } = names(entry);
  let channel;
  if (kind === "private") channel = echo.private(bare);
  else if (kind === "presence") channel = echo.join(bare);
  else if (kind === "encrypted") channel = echo.encryptedPrivate(bare);
  else channel = echo.channel(bare);

  channel.subscribed(() => emit({ type: "subscribed", channel: wire }));
  channel.error((error) => emit({ type: "subscription_error", channel: wire, error: plain(error) }));
  if (kind === "presence") {
    channel.here((members) =>
      emit({ type: "presence", channel: wire, action: "here", members: plain(members) }),
    );
    channel.joining((info) =>
      emit({ type: "presence", channel: wire, action: "joining", member: plain(info) }),
    );
    channel.leaving((info) =>
      emit({ type: "presence", channel: wire, action: "leaving", member: plain(info) }),
    );
  }
  const formatter = new EventFormatter(echo.connector.options.namespace);
  const report = (listen, event) => (data, metadata) => {
    const message = { type: "event", channel: wire, event, listen, data: plain(data) };
    if (metadata?.user_id !== undefined) message.user_id = metadata.user_id;
    emit(message);
  };
  for (const name of entry.listen ?? []) {
    channel.listen(name, report(name, formatter.format(name)));
  }
  for (const name of entry.listenForWhisper ?? []) {
    channel.listenForWhisper(name, report(name, "client-" + name));
  }
  if (entry.notification) {
    channel.notification(
      report("notification", "Illuminate\\Notifications\\Events\\BroadcastNotificationCreated"),
    );
  }
  if (entry.listenToAll) {
    channel.listenToAll((event, data) =>
      emit({ type: "event", channel: wire, event, listen: "*", data: plain(data) }),
    );
  }
}

function subscribePusher(entry) {
  const { kind, wire } = names(entry);
  const channel = pusher.subscribe(wire);
  channel.bind("pusher:subscription_succeeded", (data) => {
    emit({ type: "subscribed", channel: wire });
    if (kind === "presence") {
      const members = [];
      data.each((m) => members.push(member(m)));
      emit({
        type: "presence",
        channel: wire,
        action: "here",
        members,
        me: member(data.me),
        count: data.count,
      });
    }
  });
  channel.bind("pusher:subscription_error", (error) =>
    emit({ type: "subscription_error", channel: wire, error: plain(error) }),
  );
  // A pusher:error frame that names this channel (a refused client event, say).
  channel.bind("pusher:error", (error) =>
    emit({ type: "channel_error", channel: wire, error: plain(error) }),
  );
  if (kind === "presence") {
    channel.bind("pusher:member_added", (m) =>
      emit({ type: "presence", channel: wire, action: "joining", member: member(m) }),
    );
    channel.bind("pusher:member_removed", (m) =>
      emit({ type: "presence", channel: wire, action: "leaving", member: member(m) }),
    );
  }
  const report = (event, data, metadata) => {
    const message = { type: "event", channel: wire, event, data: plain(data) };
    if (metadata?.user_id !== undefined) message.user_id = metadata.user_id;
    emit(message);
  };
  const listen = entry.listen ?? ["*"];
  if (listen.includes("*")) {
    channel.bind_global((event, data, metadata) => {
      if (!event.startsWith("pusher:")) report(event, data, metadata);
    });
  }
  for (const event of listen) {
    if (event !== "*") channel.bind(event, (data, metadata) => report(event, data, metadata));
  }
}

function subscribe(entry) {
  if (mode === "echo") subscribeEcho(entry);
  else subscribePusher(entry);
}

function whisper({ channel: given, event, data }) {
  const name = String(event ?? "");
  const bare = name.startsWith("client-") ? name.slice("client-".length) : name;
  const { wire } = names({ name: given });
  if (mode === "echo") {
    const channel = echo.connector.channels[wire];
    if (!channel) throw new Error(`not subscribed to ${wire} through Echo`);
    if (typeof channel.whisper !== "function") {
      throw new Error(`Echo has no whisper() on ${wire} (public channel)`);
    }
    channel.whisper(bare, data ?? {});
    return { sent: pusher.connection.state === "connected" };
  }
  const channel = pusher.channel(wire);
  if (!channel) throw new Error(`not subscribed to ${wire}`);
  return { sent: channel.trigger("client-" + bare, data ?? {}) };
}

function leave(given) {
  const { wire } = names({ name: given });
  if (mode === "echo") echo.leaveChannel(wire);
  else pusher.unsubscribe(wire);
}

let quitting = false;

function quit(code = 0) {
  if (quitting) return;
  quitting = true;
  try {
    pusher.disconnect();
  } catch (error) {
    process.stderr.write(`disconnect failed: ${error}\n`);
  }
  emit({ type: "bye" });
  // Let the close frame go out, then leave even if pusher-js still holds timers.
  setTimeout(() => process.exit(code), 50);
}

function handle(command) {
  switch (command.cmd) {
    case "subscribe":
      subscribe(command);
      return {};
    case "leave":
    case "unsubscribe":
      leave(command.channel ?? command.name);
      return {};
    case "whisper":
      return whisper(command);
    case "send":
      return { sent: pusher.send_event(command.event, command.data ?? {}, command.channel) };
    case "signin":
      signin();
      return {};
    case "disconnect":
      pusher.disconnect();
      return {};
    case "connect":
      pusher.connect();
      return {};
    case "state":
      return { current: pusher.connection.state, socket_id: pusher.connection.socket_id ?? null };
    case "quit":
      quit();
      return null;
    default:
      throw new Error(`unknown command ${JSON.stringify(command.cmd)}`);
  }
}

for (const entry of config.subscribe ?? []) subscribe(entry);
if (config.signin) signin();

const input = createInterface({ input: process.stdin, crlfDelay: Infinity });
input.on("line", (line) => {
  if (!line.trim()) return;
  let command;
  try {
    command = JSON.parse(line);
  } catch (error) {
    emit({ type: "command_error", line, error: { message: error.message } });
    return;
  }
  try {
    const result = handle(command);
    if (result !== null) emit({ type: "ack", cmd: command.cmd, ...result });
  } catch (error) {
    emit({ type: "command_error", cmd: command.cmd ?? null, error: plain(error) });
  }
});
input.on("close", () => quit());
process.on("SIGTERM", () => quit());
