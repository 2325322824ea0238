// notiflow-replay.js: no missed notification across a disconnect, for unmodified pusher-js and
// Laravel Echo (notiflow README, "Replay of missed notifications"). A plain script, no build:
// <script src> defines window.notiflowReplay; require()/import give the same function.
//
//   const replay = notiflowReplay(userId);
//   const pusher = new Pusher(key, { ..., channelAuthorization: { endpoint, headers, params: replay.params } });
//   const echo = new Echo({ ..., auth: { headers, params: replay.params } });
//   replay.watch(pusher);  // or replay.watch(echo.connector.pusher)
//
// It remembers the last `sequence` seen on private-notifications.{userId} (per tab: sessionStorage
// when there is one, else memory) and sends it as `last_sequence` with each channel authorization,
// so the server replays what this tab missed. On ResyncRequired, reload the list.
(function (root) {
  function notiflowReplay(userId, storage) {
    if (storage === undefined) storage = root.sessionStorage; // localStorage is shared by tabs
    const key = "notiflow:last-sequence:" + userId;
    const params = {}; // read by pusher-js at every authorization
    let memory = null;
    const read = () => { try { return storage ? storage.getItem(key) : memory; } catch (e) { return memory; } };
    const write = (value) => {
      memory = value;
      try { if (storage) value === null ? storage.removeItem(key) : storage.setItem(key, value); } catch (e) { /* memory */ }
      if (value === null) delete params.last_sequence; else params.last_sequence = value;
    };
    write(read());
    function seen(event, data) {
      const sequence = data && data.sequence;
      if (event === "ResyncRequired") write(typeof sequence === "number" ? String(sequence) : null);
      else if ((event === "NotificationCreated" || event === "UnreadCountChanged") &&
        typeof sequence === "number" && sequence > Number(read() ?? -1)) write(String(sequence));
    }
    return { params, seen, watch: (pusher) => { pusher.bind_global(seen); return pusher; } };
  }
  root.notiflowReplay = notiflowReplay;
  if (typeof module === "object" && module.exports) module.exports = notiflowReplay;
})(typeof globalThis !== "undefined" ? globalThis : this);
