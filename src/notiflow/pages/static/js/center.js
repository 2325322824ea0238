// center.js: the notification center (GET /). Everything through the public API with the user's
// bearer token, live with laravel-echo + pusher-js over notiflow's WebSocket server — the
// reference integration for a front end (docs/pages.md).
import {
  api, currentLocale, formatTime, getToken, hasMessage, onLocaleChange, showPageError,
  startPage, t,
} from "./notiflow-page.js";

const PAGE_SIZE = 20;
const TOAST_SECONDS = 10;
const CHANNELS = ["in_app", "email", "push"];
// The padlock of a cell the tenant decides (the same drawing as in center.html's legend).
const LOCK_PATH = "M12 2a5 5 0 0 0-5 5v3H6a2 2 0 0 0-2 2v8a2 2 0 0 0 2 2h12a2 2 0 0 0 2-2v-8a2 2 0 0 0-2-2h-1V7a5 5 0 0 0-5-5Zm-3 8V7a3 3 0 0 1 6 0v3Z";

const $ = (id) => document.getElementById(id);

const state = {
  user: null,
  preferences: [], // GET /notifications/preferences: one entry per type
  categories: [], // in the API's order
  filters: { category: "", type: "", is_read: "" },
  cursor: null,
  done: false,
  loading: null, // the page request in flight
  generation: 0, // bumped when the list is reset: late answers of an old list are dropped
  items: new Map(), // id -> notification
  selected: new Set(),
  echo: null,
  unread: 0,
};

// ------------------------------------------------------------------ small helpers

function element(tag, attributes = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes)) {
    if (value === false || value === null || value === undefined) continue;
    if (name === "class") node.className = value;
    else if (name === "text") node.textContent = value;
    else if (name.startsWith("on")) node.addEventListener(name.slice(2), value);
    else node.setAttribute(name, value === true ? "" : value);
  }
  for (const child of children) if (child !== null && child !== undefined) node.append(child);
  return node;
}

function typeLabel(type) {
  return hasMessage(`type.${type}`) ? t(`type.${type}`) : type;
}

function categoryOf(type) {
  const entry = state.preferences.find((item) => item.notification_type === type);
  return entry ? entry.category : null;
}

function categoryLabel(category) {
  return category && hasMessage(`category.${category}`) ? t(`category.${category}`) : category || "";
}

function announce(message) {
  const announcer = $("nf-announcer");
  announcer.textContent = "";
  // A fresh text node after a tick, so the same message twice is announced twice.
  window.setTimeout(() => { announcer.textContent = message; }, 50);
}

async function run(action) {
  try {
    showPageError("");
    return await action();
  } catch (error) {
    if (error.status !== 401) showPageError(error.message);
    return undefined;
  }
}

// ------------------------------------------------------------------ badge

function setBadge(count) {
  state.unread = count;
  const badge = $("nf-badge");
  badge.textContent = count > 99 ? "99+" : String(count);
  badge.hidden = count === 0;
  $("nf-bell").setAttribute("aria-label", count ? t("bell.label", { count }) : t("bell.label_none"));
  document.title = `${count ? `(${count}) ` : ""}${t("center.title")} · notiflow`;
}

async function refreshCount() {
  const { data } = await api("/api/v1/notifications/unread-count");
  setBadge(data.count);
}

// ------------------------------------------------------------------ views

function showView() {
  const view = window.location.hash === "#preferences" ? "preferences" : "feed";
  $("feed").hidden = view !== "feed";
  $("preferences").hidden = view !== "preferences";
  $("nf-bell").toggleAttribute("aria-current", false);
  $("nf-preferences-tab").toggleAttribute("aria-current", false);
  (view === "feed" ? $("nf-bell") : $("nf-preferences-tab")).setAttribute("aria-current", "page");
}

// ------------------------------------------------------------------ the feed

function feedParams(extra = {}) {
  const { category, type, is_read: isRead } = state.filters;
  return { per_page: PAGE_SIZE, category, type, is_read: isRead, ...extra };
}

function renderItem(notification, { fresh = false } = {}) {
  const title = notification.title;
  const unread = !notification.is_read;
  const checkbox = element("input", {
    type: "checkbox",
    "aria-label": t("feed.select", { title }),
    onchange: (event) => {
      if (event.target.checked) state.selected.add(notification.id);
      else state.selected.delete(notification.id);
      updateBulk();
    },
  });
  checkbox.checked = state.selected.has(notification.id);
  const whyId = `nf-why-${notification.id}`;
  const why = element("div", { class: "why", id: whyId, hidden: true });
  const whyButton = element("button", {
    type: "button", class: "link-button", "aria-expanded": "false", "aria-controls": whyId,
    text: t("feed.why"),
    onclick: () => toggleWhy(notification, whyButton, why),
  });
  const actions = element("div", { class: "item__actions" });
  if (unread) {
    actions.append(element("button", {
      type: "button", class: "button button--small item__read", text: t("feed.mark_read"),
      "aria-label": t("feed.mark_read_named", { title }),
      onclick: () => run(async () => {
        await api(`/api/v1/notifications/${notification.id}/read`, { method: "POST" });
        announce(t("feed.marked_read"));
        await Promise.all([refreshHead(), refreshCount()]);
      }),
    }));
  }
  actions.append(element("button", {
    type: "button", class: "button button--small button--quiet item__archive", text: t("feed.archive"),
    "aria-label": t("feed.archive_named", { title }),
    onclick: () => run(async () => {
      await api(`/api/v1/notifications/${notification.id}/archive`, { method: "POST" });
      removeItem(notification.id);
      announce(t("feed.archived"));
      await refreshCount();
    }),
  }));
  actions.append(whyButton);
  // A path ("/posts/42") belongs to the platform's own front end, not to notiflow: only a full
  // address is a link here.
  if (/^https?:\/\//.test(notification.action_url || "")) {
    actions.append(element("a", { href: notification.action_url, text: t("feed.open"), rel: "noopener noreferrer" }));
  }
  const category = categoryOf(notification.type);
  const item = element(
    "li",
    {
      class: `item${unread ? " item--unread" : ""}${fresh ? " item--new" : ""}`,
      "data-id": notification.id,
      "data-type": notification.type,
    },
    element("div", { class: "item__select" }, checkbox),
    element(
      "div",
      { class: "item__body" },
      element("p", { class: "item__title" },
        unread ? element("span", { class: "visually-hidden item__unread", text: `${t("feed.unread_marker")}: ` }) : null,
        title),
      element("p", { class: "item__message", text: notification.message }),
      element("p", { class: "item__meta" },
        element("span", { text: typeLabel(notification.type) }),
        category ? element("span", { text: categoryLabel(category) }) : null,
        element("time", { datetime: notification.created_at, text: formatTime(notification.created_at) })),
    ),
    actions,
    why,
  );
  return item;
}

function updateEmpty() {
  const list = $("nf-feed");
  $("nf-feed-empty").hidden = !(state.done && list.children.length === 0);
  $("nf-feed-end").hidden = !(state.done && list.children.length > PAGE_SIZE);
  $("nf-load-more").hidden = state.done;
}

function updateBulk() {
  for (const id of [...state.selected]) if (!state.items.has(id)) state.selected.delete(id);
  const count = state.selected.size;
  $("nf-bulk").hidden = count === 0;
  $("nf-selected-count").textContent = count ? t("feed.selected_count", { count }) : "";
}

function removeItem(id) {
  state.items.delete(id);
  state.selected.delete(id);
  const node = $("nf-feed").querySelector(`[data-id="${CSS.escape(id)}"]`);
  if (node) node.remove();
  updateBulk();
  updateEmpty();
}

function replaceItem(notification) {
  const node = $("nf-feed").querySelector(`[data-id="${CSS.escape(notification.id)}"]`);
  state.items.set(notification.id, notification);
  if (node) {
    const hadFocus = node.contains(document.activeElement);
    const fresh = renderItem(notification);
    node.replaceWith(fresh);
    if (hadFocus) fresh.querySelector("input").focus();
  }
}

/** Show an item read where it is (no re-render: keyboard focus stays where it was). */
function markShownRead(notification) {
  state.items.set(notification.id, notification);
  const node = $("nf-feed").querySelector(`[data-id="${CSS.escape(notification.id)}"]`);
  if (!node || !notification.is_read) return replaceItem(notification);
  node.classList.remove("item--unread");
  node.querySelector(".item__unread")?.remove();
  const button = node.querySelector(".item__read");
  if (button) {
    const hadFocus = button === document.activeElement;
    button.remove();
    if (hadFocus) node.querySelector(".item__archive").focus();
  }
  return undefined;
}

async function loadMore() {
  if (!state.user) return undefined;
  if (state.loading || state.done) return state.loading;
  const generation = state.generation;
  $("nf-feed-loading").hidden = false;
  state.loading = (async () => {
    try {
      const params = state.cursor ? feedParams({ cursor: state.cursor }) : feedParams({ page: 1 });
      const page = await api("/api/v1/notifications", { params });
      if (generation !== state.generation) return;
      const list = $("nf-feed");
      for (const notification of page.data) {
        if (state.items.has(notification.id)) continue;
        state.items.set(notification.id, notification);
        list.append(renderItem(notification));
      }
      state.cursor = page.meta.next_cursor;
      state.done = !state.cursor;
    } finally {
      if (generation === state.generation) {
        state.loading = null;
        $("nf-feed-loading").hidden = true;
        $("nf-feed").setAttribute("aria-busy", "false");
        updateEmpty();
      }
    }
  })();
  return run(() => state.loading);
}

function resetFeed() {
  state.generation += 1;
  state.loading = null;
  state.cursor = null;
  state.done = false;
  state.items.clear();
  state.selected.clear();
  $("nf-feed").replaceChildren();
  $("nf-feed").setAttribute("aria-busy", "true");
  updateBulk();
}

async function reloadFeed() {
  resetFeed();
  await loadMore();
  fillViewport();
}

// Infinite scroll: load the next page whenever the end of the list comes into view.
function fillViewport() {
  const sentinel = $("nf-sentinel");
  const rect = sentinel.getBoundingClientRect();
  if (state.user && !state.done && !$("feed").hidden && rect.top < window.innerHeight + 200) {
    loadMore().then(() => { if (!state.done) window.requestAnimationFrame(fillViewport); });
  }
}

let headQueue = Promise.resolve();
let headQueued = false;

/** Bring the top of the list up to date: new notifications in, read state and removals from
 * other tabs applied. Serialized, so bursts of live events do not race each other, and
 * coalesced: a burst of events while one refresh runs makes one more refresh, not one each. */
function refreshHead({ fresh = true } = {}) {
  if (headQueued) return headQueue;
  headQueued = true;
  headQueue = headQueue.then(() => run(async () => {
    headQueued = false;
    if (!state.user) return;
    const generation = state.generation;
    const page = await api("/api/v1/notifications", { params: feedParams({ page: 1 }) });
    if (generation !== state.generation) return;
    const list = $("nf-feed");
    const head = new Set(page.data.map((item) => item.id));
    const oldest = page.data.length ? Date.parse(page.data[page.data.length - 1].created_at) : null;
    // Shown items as new as the head's oldest but no longer in it: read or archived elsewhere
    // (and filtered out), or deleted.
    for (const [id, item] of state.items) {
      if (!head.has(id) && (page.meta.next_cursor === null || (oldest !== null && Date.parse(item.created_at) >= oldest))) {
        removeItem(id);
      }
    }
    let anchor = list.firstElementChild;
    for (const notification of page.data) {
      const known = state.items.get(notification.id);
      if (known) {
        if (known.is_read !== notification.is_read) markShownRead(notification);
        anchor = list.querySelector(`[data-id="${CSS.escape(notification.id)}"]`)?.nextElementSibling ?? null;
        continue;
      }
      state.items.set(notification.id, notification);
      list.insertBefore(renderItem(notification, { fresh }), anchor);
    }
    updateEmpty();
  }));
  return headQueue;
}

async function bulk(path, { remove = false, message }) {
  const ids = [...state.selected];
  if (!ids.length) return;
  await run(async () => {
    await api(`/api/v1/notifications/${path}`, { method: "POST", body: { ids } });
    if (remove) ids.forEach(removeItem);
    state.selected.clear();
    updateBulk();
    announce(message);
    await Promise.all([refreshHead(), refreshCount()]);
  });
}

// ------------------------------------------------------------------ "why did I get this?"

function explainDelivery(delivery) {
  const parts = [];
  if (delivery.status === "sent") {
    parts.push(t("status.sent", { time: formatTime(delivery.sent_at || delivery.updated_at) }));
  } else if (hasMessage(`status.${delivery.status}`)) {
    parts.push(t(`status.${delivery.status}`));
  } else {
    parts.push(delivery.status);
  }
  if (delivery.reason) {
    // A reason may carry details after its code: "push_subscriptions_gone (410)".
    const code = delivery.reason.split(/[\s(]/)[0];
    parts.push(hasMessage(`reason.${code}`)
      ? t(`reason.${code}`)
      : t("reason.unknown", { reason: delivery.reason }));
  }
  return parts.join(" ");
}

async function toggleWhy(notification, button, container) {
  const open = button.getAttribute("aria-expanded") === "true";
  button.setAttribute("aria-expanded", String(!open));
  container.hidden = open;
  if (open) return;
  container.replaceChildren(element("p", { class: "hint", text: t("feed.loading") }));
  try {
    const { data } = await api(`/api/v1/notifications/${notification.id}/deliveries`);
    const type = typeLabel(notification.type);
    const category = categoryLabel(categoryOf(notification.type));
    const lines = data.deliveries.map((delivery) => element(
      "li",
      { "data-channel": delivery.channel },
      element("strong", { text: `${hasMessage(`channel.${delivery.channel}`) ? t(`channel.${delivery.channel}`) : delivery.channel}: ` }),
      explainDelivery(delivery),
    ));
    container.replaceChildren(
      element("h3", { text: t("why.title") }),
      element("p", { text: t("why.in_app", { type, category }) }),
      lines.length ? element("ul", {}, ...lines) : element("p", { text: t("why.no_external") }),
    );
  } catch (error) {
    container.replaceChildren(element("p", { class: "notice notice--error", text: t("why.error") }));
  }
}

// ------------------------------------------------------------------ live events

function toast(notification) {
  const region = $("nf-toasts");
  const close = element("button", { type: "button", class: "toast__close", text: t("toast.close") });
  const node = element(
    "div",
    { class: "toast", role: "status", "data-id": notification.id, "data-type": notification.type },
    element("p", { class: "toast__title", text: notification.title }),
    element("p", { class: "toast__message", text: notification.message }),
    close,
  );
  let timer = null;
  const dismiss = () => { window.clearTimeout(timer); node.remove(); };
  const arm = () => { timer = window.setTimeout(dismiss, TOAST_SECONDS * 1000); };
  close.addEventListener("click", dismiss);
  // Stays while pointed at or focused, so it can be read and reached by keyboard.
  node.addEventListener("mouseenter", () => window.clearTimeout(timer));
  node.addEventListener("mouseleave", arm);
  node.addEventListener("focusin", () => window.clearTimeout(timer));
  node.addEventListener("focusout", arm);
  region.append(node);
  arm();
  if (document.hidden && "Notification" in window && window.Notification.permission === "granted") {
    try { new window.Notification(notification.title, { body: notification.message, tag: notification.id }); } catch (error) { /* a page cannot show one on some platforms */ }
  }
}

function setLive(stateName) {
  const known = { connected: "connected", connecting: "connecting", initialized: "connecting" };
  const value = known[stateName] || "offline";
  $("nf-live").dataset.live = value;
  const text = $("nf-live-text");
  text.dataset.i18n = `live.${value}`;
  text.textContent = t(`live.${value}`);
}

async function connectLive(user) {
  const { data: config } = await api("/api/v1/realtime/config");
  const replay = window.notiflowReplay(user.id);
  // config.echo holds everything Echo needs; the bearer token authorizes the private channel.
  const echo = new window.Echo.default({
    ...config.echo,
    Pusher: window.Pusher,
    bearerToken: getToken(),
    auth: { headers: {}, params: replay.params },
  });
  state.echo = echo;
  const pusher = echo.connector.pusher;
  replay.watch(pusher);
  setLive(pusher.connection.state);
  pusher.connection.bind("state_change", ({ current }) => setLive(current));
  echo.private(`notifications.${user.id}`)
    .listen(".NotificationCreated", (notification) => {
      // Sent only when push is on for this type: the pop-up. The list follows the count.
      toast(notification);
      announce(t("feed.new_announcement", { title: notification.title }));
      refreshHead();
    })
    .listen(".UnreadCountChanged", ({ count, tenant_id: tenantId }) => {
      if (tenantId && tenantId !== user.tenant_id) return;
      const changed = count !== state.unread;
      setBadge(count);
      // Every new notification changes the count, also those that do not pop up; so does
      // reading in another tab.
      if (changed) refreshHead();
    })
    .listen(".ResyncRequired", () => reloadFeed())
    .error((error) => showPageError(error && error.status ? `${error.type} ${error.status}` : "WebSocket"));
}

function disconnectLive() {
  if (state.echo) state.echo.disconnect();
  state.echo = null;
}

// ------------------------------------------------------------------ preferences

function lockIcon() {
  const svg = document.createElementNS("http://www.w3.org/2000/svg", "svg");
  svg.setAttribute("viewBox", "0 0 24 24");
  svg.setAttribute("class", "lock");
  svg.setAttribute("aria-hidden", "true");
  svg.setAttribute("focusable", "false");
  const path = document.createElementNS("http://www.w3.org/2000/svg", "path");
  path.setAttribute("fill", "currentColor");
  path.setAttribute("d", LOCK_PATH);
  svg.append(path);
  return svg;
}

function policyNote(policy) {
  return policy === "enforced" ? t("prefs.enforced") : t("prefs.forbidden");
}

function renderGrid() {
  const grid = $("nf-grid");
  const user = state.user;
  const globalOff = { email: !user.email_notifications_enabled, push: !user.push_notifications_enabled };
  const tables = state.categories.map((category) => {
    const head = element("tr", {},
      element("th", { scope: "col", text: t("prefs.type") }),
      ...CHANNELS.map((channel) => element("th", { scope: "col" },
        t(`channel.${channel}`),
        globalOff[channel] ? element("span", { class: "column-off", text: t("prefs.off_globally") }) : null)));
    const rows = state.preferences
      .filter((item) => item.category === category)
      .map((item) => element("tr", { "data-type": item.notification_type },
        element("th", { scope: "row", text: typeLabel(item.notification_type) }),
        ...CHANNELS.map((channel) => element("td", {}, renderCell(item, channel)))));
    return element("table", { "data-category": category },
      element("caption", { text: categoryLabel(category) }),
      element("thead", {}, head),
      element("tbody", {}, ...rows));
  });
  grid.replaceChildren(...tables);
}

function renderCell(item, channel) {
  const policy = (item.tenant_policy || {})[channel];
  const id = `nf-pref-${item.notification_type}-${channel}`;
  const input = element("input", {
    type: "checkbox", id, name: `${item.notification_type}.${channel}`,
    "data-channel": channel,
    "aria-label": `${typeLabel(item.notification_type)}: ${t(`channel.${channel}`)}`,
  });
  if (policy) {
    input.checked = policy === "enforced";
    input.disabled = true;
    input.setAttribute("aria-describedby", `${id}-note`);
    return element("span", { class: "cell", title: policyNote(policy), "data-policy": policy },
      input,
      lockIcon(),
      element("span", { class: "visually-hidden", id: `${id}-note`, text: policyNote(policy) }));
  }
  input.checked = item[`${channel}_enabled`];
  input.addEventListener("change", () => savePreference(item, channel, input));
  return element("span", { class: "cell" }, input);
}

function prefsStatus(key) {
  $("nf-prefs-status").textContent = key ? t(key) : "";
}

async function savePreference(item, channel, input) {
  const wanted = { ...item, [`${channel}_enabled`]: input.checked };
  prefsStatus("prefs.saving");
  const saved = await run(() => api("/api/v1/notifications/preferences", {
    method: "PUT",
    body: {
      preferences: [{
        notification_type: item.notification_type,
        in_app_enabled: wanted.in_app_enabled,
        email_enabled: wanted.email_enabled,
        push_enabled: wanted.push_enabled,
      }],
    },
  }));
  if (!saved) {
    input.checked = !input.checked;
    prefsStatus("");
    return;
  }
  state.preferences = saved.data;
  Object.assign(item, saved.data.find((entry) => entry.notification_type === item.notification_type));
  prefsStatus("prefs.saved");
}

async function saveGlobal(name, input) {
  prefsStatus("prefs.saving");
  const saved = await run(() => api("/api/v1/me/notification-preferences", {
    method: "PATCH", body: { [name]: input.checked },
  }));
  if (!saved) {
    input.checked = !input.checked;
    prefsStatus("");
    return;
  }
  state.user = { ...state.user, ...saved.data };
  renderGrid();
  prefsStatus("prefs.saved");
}

async function loadPreferences() {
  const { data } = await api("/api/v1/notifications/preferences");
  state.preferences = data;
  state.categories = [...new Set(data.map((item) => item.category))];
  $("nf-global-email").checked = state.user.email_notifications_enabled;
  $("nf-global-push").checked = state.user.push_notifications_enabled;
  renderFilterOptions();
  renderGrid();
}

function renderFilterOptions() {
  const categorySelect = $("nf-filter-category");
  const typeSelect = $("nf-filter-type");
  categorySelect.replaceChildren(
    element("option", { value: "", text: t("feed.all_categories") }),
    ...state.categories.map((category) => element("option", { value: category, text: categoryLabel(category) })),
  );
  categorySelect.value = state.filters.category;
  const groups = state.categories
    .filter((category) => !state.filters.category || category === state.filters.category)
    .map((category) => element("optgroup", { label: categoryLabel(category) },
      ...state.preferences
        .filter((item) => item.category === category)
        .map((item) => element("option", { value: item.notification_type, text: typeLabel(item.notification_type) }))));
  typeSelect.replaceChildren(element("option", { value: "", text: t("feed.all_types") }), ...groups);
  if (state.filters.type && categoryOf(state.filters.type) !== state.filters.category && state.filters.category) {
    state.filters.type = "";
  }
  typeSelect.value = state.filters.type;
}

// ------------------------------------------------------------------ Web Push opt-in

function vapidBytes(base64url) {
  const padded = `${base64url}${"=".repeat((4 - (base64url.length % 4)) % 4)}`.replace(/-/g, "+").replace(/_/g, "/");
  return Uint8Array.from(window.atob(padded), (char) => char.charCodeAt(0));
}

async function setUpPush() {
  const section = $("nf-push");
  section.hidden = true;
  let key;
  try {
    ({ data: { public_key: key } } = await api("/api/v1/push-subscriptions/vapid-public-key"));
  } catch (error) {
    return; // 404 webpush_not_configured: no opt-in to offer
  }
  section.hidden = false;
  const status = $("nf-push-status");
  const button = $("nf-push-toggle");
  if (!("serviceWorker" in navigator) || !("PushManager" in window)) {
    status.textContent = t("push.unsupported");
    button.hidden = true;
    return;
  }
  const registration = await navigator.serviceWorker.register("/static/js/push-sw.js");
  let subscription = await registration.pushManager.getSubscription();
  const show = () => {
    button.textContent = subscription ? t("push.disable") : t("push.enable");
    status.textContent = window.Notification.permission === "denied"
      ? t("push.denied") : subscription ? t("push.enabled") : t("push.disabled");
  };
  show();
  onLocaleChange(show);
  button.onclick = () => run(async () => {
    if (subscription) {
      await api("/api/v1/push-subscriptions", { method: "DELETE", body: { endpoint: subscription.endpoint } }).catch(() => null);
      await subscription.unsubscribe();
      subscription = null;
    } else {
      if ((await window.Notification.requestPermission()) !== "granted") return show();
      subscription = await registration.pushManager.subscribe({
        userVisibleOnly: true, applicationServerKey: vapidBytes(key),
      });
      await api("/api/v1/push-subscriptions", { method: "POST", body: subscription.toJSON() });
    }
    show();
  });
}

// ------------------------------------------------------------------ start

function rerenderForLocale() {
  if (!state.user) return;
  setBadge(state.unread);
  renderFilterOptions();
  renderGrid();
  for (const notification of state.items.values()) replaceItem(notification);
  setLive($("nf-live").dataset.live);
}

function wire() {
  window.addEventListener("hashchange", () => {
    showView();
    // Where the view starts, for keyboard and screen reader users.
    $(window.location.hash === "#preferences" ? "nf-preferences-title" : "nf-feed-title").focus();
    fillViewport();
  });
  $("nf-filters").addEventListener("change", (event) => {
    state.filters[event.target.name] = event.target.value;
    if (event.target.name === "category") renderFilterOptions();
    reloadFeed();
  });
  $("nf-filters").addEventListener("submit", (event) => event.preventDefault());
  $("nf-mark-all").addEventListener("click", () => run(async () => {
    await api("/api/v1/notifications/read-all", { method: "POST" });
    announce(t("feed.marked_read"));
    await Promise.all([refreshHead(), refreshCount()]);
  }));
  $("nf-read-selected").addEventListener("click", () => bulk("read-multiple", { message: t("feed.marked_read") }));
  $("nf-archive-selected").addEventListener("click", () => bulk("archive-multiple", { remove: true, message: t("feed.archived") }));
  $("nf-load-more").addEventListener("click", () => loadMore());
  $("nf-global-email").addEventListener("change", (event) => saveGlobal("email_notifications_enabled", event.target));
  $("nf-global-push").addEventListener("change", (event) => saveGlobal("push_notifications_enabled", event.target));
  new IntersectionObserver((entries) => {
    if (entries.some((entry) => entry.isIntersecting)) fillViewport();
  }, { rootMargin: "200px" }).observe($("nf-sentinel"));
  onLocaleChange(rerenderForLocale);
}

wire();
showView();
// "2 minutes ago" stays true.
window.setInterval(() => {
  for (const time of document.querySelectorAll("#nf-feed time")) {
    time.textContent = formatTime(time.getAttribute("datetime"));
  }
}, 30_000);
startPage({
  onSignedIn: async (user) => {
    state.user = user;
    document.body.dataset.locale = currentLocale();
    await run(async () => {
      await loadPreferences();
      await Promise.all([refreshCount(), reloadFeed()]);
      await connectLive(user);
    });
    run(setUpPush);
  },
  onSignedOut: () => {
    disconnectLive();
    state.user = null;
    resetFeed();
    setBadge(0);
    $("nf-grid").replaceChildren();
    $("nf-toasts").replaceChildren();
  },
});
