// admin.js: /admin, a tenant's operations for its owners and admins. Everything comes from the
// public API with the user's bearer token (docs/admin.md lists the routes; docs/pages.md what
// the page shows of them). Members are told "not for your account" by the layout (roles).
import {
  api, currentLocale, formatTime, hasMessage, onLocaleChange, showPageError, startPage, t,
} from "./notiflow-page.js";
import { lineChart, stackedBars } from "./admin-charts.js";

const REFRESH_SECONDS = 15;
// After a retry or a send, the ledger is looked at again this often for a while, so its
// outcome shows without the user asking.
const WATCH_SECONDS = 2;
const WATCH_TIMES = 15;
const LEDGER_PAGE = 25;
const AUDIT_PAGE = 25;
const STATUS_COLOURS = {
  sent: "#1e6b35", failed: "#b3261e", suppressed: "#5f6b77", pending: "#0b5cad",
  sending: "#6a3fb0", outcome_unknown: "#8a5a00",
};
const ALL_TYPES = Object.keys(JSON.parse(document.getElementById("nf-messages").textContent).en)
  .filter((key) => key.startsWith("type."))
  .map((key) => key.slice("type.".length));

const $ = (id) => document.getElementById(id);

const state = {
  user: null,
  members: new Map(), // user_id -> member
  ledgerCursor: null,
  ledgerPaged: false, // more pages loaded: the periodic refresh leaves the list alone
  auditCursor: null,
  auditPaged: false,
  refreshTimer: null,
  watchTimer: null,
  generation: 0, // bumped on sign-out: late answers are dropped
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

function announce(message) {
  const announcer = $("nf-admin-announcer");
  announcer.textContent = "";
  window.setTimeout(() => { announcer.textContent = message; }, 50);
}

function setStatus(id, message) {
  $(id).textContent = message;
}

function typeLabel(type) {
  return hasMessage(`type.${type}`) ? t(`type.${type}`) : type;
}

function channelLabel(channel) {
  return hasMessage(`channel.${channel}`) ? t(`channel.${channel}`) : channel;
}

function statusLabel(status) {
  return hasMessage(`admin.status.${status}`) ? t(`admin.status.${status}`) : status;
}

function reasonLabel(reason) {
  if (!reason) return "";
  return hasMessage(`reason.${reason}`) ? t(`reason.${reason}`) : t("reason.unknown", { reason });
}

function roleLabel(role) {
  return hasMessage(`admin.role.${role}`) ? t(`admin.role.${role}`) : role;
}

function memberName(userId) {
  const member = state.members.get(userId);
  return member ? `${member.name} <${member.email}>` : userId;
}

function time(iso) {
  if (!iso) return element("span", { text: "–" });
  return element("time", { datetime: iso, title: new Date(iso).toLocaleString(currentLocale()) }, formatTime(iso));
}

const rendered = new WeakMap(); // container -> what it shows, to redraw only on a change

/** A table of `rows`, or an empty-state line. Columns: {label, cell(row) -> Node|string}.
 * Redrawn only when the rows, the language or the minute (relative times) changed, and the
 * keyboard focus stays on the same control (found again by its accessible name). */
function table(container, { caption, columns, rows, empty }) {
  const signature = JSON.stringify([currentLocale(), Math.floor(Date.now() / 60000), rows]);
  if (rendered.get(container) === signature) return;
  rendered.set(container, signature);
  const active = document.activeElement;
  const focused = active && container.contains(active) ? active.getAttribute("aria-label") : null;
  if (!rows.length) {
    container.replaceChildren(element("p", { class: "empty", text: empty }));
    return;
  }
  const head = element("tr", {}, ...columns.map((column) => element("th", { scope: "col", text: column.label })));
  const body = rows.map((row) => element("tr", {}, ...columns.map((column) => {
    const value = column.cell(row);
    return element("td", { "data-label": column.label }, value instanceof Node ? value : String(value ?? ""));
  })));
  container.replaceChildren(element(
    "table", { class: "data-table" },
    element("caption", { class: "visually-hidden", text: caption }),
    element("thead", {}, head),
    element("tbody", {}, ...body),
  ));
  if (focused) {
    const again = [...container.querySelectorAll("[aria-label]")].find((node) => node.getAttribute("aria-label") === focused);
    if (again) again.focus();
  }
}

/** Text that changed only: a live region re-reads what it is given, even the same. */
function setText(id, value) {
  const node = $(id);
  if (node.textContent !== String(value)) node.textContent = value;
}

/** A button whose action cannot be undone: the first press asks "Sure?", the second does it.
 * Unconfirmed, it goes back after a few seconds. */
function destructiveButton({ label, named, action }) {
  let armed = null;
  const button = element("button", {
    type: "button", class: "button button--small button--quiet", "aria-label": named,
  }, label);
  button.addEventListener("click", async () => {
    if (armed === null) {
      button.textContent = t("admin.confirm");
      button.setAttribute("aria-label", t("admin.confirm_named", { action: named }));
      button.classList.add("button--danger");
      armed = window.setTimeout(() => {
        armed = null;
        button.textContent = label;
        button.setAttribute("aria-label", named);
        button.classList.remove("button--danger");
      }, 6000);
      return;
    }
    window.clearTimeout(armed);
    button.disabled = true;
    await action();
  });
  return button;
}

function failure(container, error) {
  rendered.delete(container);
  container.replaceChildren(element("p", { class: "notice notice--error", role: "alert", text: t("error.generic", { message: error.message }) }));
}

/** Run an action of the user; its API error goes to the page's error line. */
async function run(action) {
  try {
    showPageError("");
    return await action();
  } catch (error) {
    if (error.status !== 401) showPageError(error.message);
    return undefined;
  }
}

/** Load one panel; an error is shown in the panel, never stops the others. */
async function panel(container, load) {
  const generation = state.generation;
  try {
    await load(() => generation === state.generation);
  } catch (error) {
    if (error.status !== 401 && generation === state.generation) failure(container, error);
  }
}

/** An action the API audits was taken: the log's first page (and its actions) again. */
function audited() {
  loadAuditActions();
  loadAudit();
}

// ------------------------------------------------------------------ activity: queue, charts

async function loadJobs() {
  await panel($("nf-throughput-chart"), async (current) => {
    const { data } = await api("/api/v1/admin/jobs", { params: { minutes: 60 } });
    if (!current()) return;
    const { queue, throughput } = data;
    setText("nf-queue-waiting", queue.running === null ? queue.waiting : queue.waiting + queue.running);
    setText("nf-queue-retries", queue.retries_scheduled);
    setText("nf-queue-pending", queue.tenant_deliveries_pending + queue.tenant_deliveries_sending);
    const chart = $("nf-throughput-chart");
    if (!throughput) {
      chart.replaceChildren(element("p", { class: "empty", text: t("admin.throughput_none") }));
      return;
    }
    const sum = (key) => throughput.reduce((total, minute) => total + minute[key], 0);
    const lastDepth = [...throughput].reverse().find((minute) => minute.queue_depth !== null);
    lineChart(chart, {
      times: throughput.map((minute) => minute.start),
      series: [
        { label: t("admin.series_finished"), values: throughput.map((m) => m.finished), color: "#0b5cad" },
        { label: t("admin.series_failed"), values: throughput.map((m) => m.failed), color: "#b3261e" },
        { label: t("admin.series_depth"), values: throughput.map((m) => m.queue_depth), color: "#8a5a00", dashed: true },
      ],
      summary: t("admin.throughput_summary", {
        finished: sum("finished"), failed: sum("failed"),
        depth: lastDepth ? lastDepth.queue_depth : queue.waiting,
      }),
      caption: t("admin.chart_numbers"),
      locale: currentLocale(),
    });
  });
}

async function loadLag() {
  const chart = $("nf-lag-chart");
  await panel(chart, async (current) => {
    const { data } = await api("/api/v1/admin/publishing/lag", { params: { hours: 24, bucket_minutes: 60 } });
    if (!current()) return;
    const published = data.buckets.reduce((total, bucket) => total + bucket.published, 0);
    const worst = Math.max(0, ...data.buckets.map((bucket) => bucket.max_seconds ?? 0));
    const round = (value) => (value === null ? null : Math.round(value));
    lineChart(chart, {
      times: data.buckets.map((bucket) => bucket.start),
      series: [
        { label: t("admin.series_lag_average"), values: data.buckets.map((b) => round(b.average_seconds)), color: "#0b5cad" },
        { label: t("admin.series_lag_max"), values: data.buckets.map((b) => round(b.max_seconds)), color: "#b3261e", dashed: true },
      ],
      summary: published
        ? t("admin.lag_summary", { published, max: Math.round(worst) })
        : t("admin.lag_none"),
      caption: t("admin.chart_numbers"),
      locale: currentLocale(),
      unit: " s",
    });
  });
}

async function loadNodes() {
  const container = $("nf-nodes");
  await panel(container, async (current) => {
    const { data } = await api("/api/v1/admin/realtime/nodes");
    if (!current()) return;
    setText("nf-connections", data.connections);
    table(container, {
      caption: t("admin.nodes_title"),
      empty: t("admin.nodes_none"),
      rows: data.nodes,
      columns: [
        { label: t("admin.node"), cell: (node) => element("code", { text: node.node_id }) },
        { label: t("admin.node_connections"), cell: (node) => node.connections },
        { label: t("admin.node_channels"), cell: (node) => node.channels },
        {
          label: t("admin.node_tenant_channels"),
          cell: (node) => (node.tenant_channels.length
            ? element("ul", { class: "plain-list" }, ...node.tenant_channels.map((channel) => element(
              "li", {}, element("code", { text: channel.name }), ` (${channel.subscriptions})`,
            )))
            : "–"),
        },
        { label: t("admin.node_reported"), cell: (node) => time(node.reported_at) },
      ],
    });
  });
}

async function loadSchedule() {
  const container = $("nf-schedule");
  await panel(container, async (current) => {
    const { data } = await api("/api/v1/admin/schedule");
    if (!current()) return;
    const rows = [
      ...data.workspaces.map((entry) => ({ ...entry, scope: entry.workspace_name })),
      ...data.platform.map((entry) => ({ ...entry, scope: t("admin.schedule_everyone") })),
    ];
    table(container, {
      caption: t("admin.schedule_title"),
      empty: t("admin.schedule_none"),
      rows,
      columns: [
        { label: t("admin.job"), cell: (entry) => element("code", { text: entry.job }) },
        { label: t("admin.schedule_for"), cell: (entry) => entry.scope },
        {
          label: t("admin.schedule_what"),
          cell: (entry) => (hasMessage(`admin.job.${entry.job}`) ? t(`admin.job.${entry.job}`) : entry.description),
        },
        { label: t("admin.schedule_when"), cell: (entry) => element("code", { text: entry.when }) },
        { label: t("admin.schedule_next"), cell: (entry) => (entry.next_run_at ? time(entry.next_run_at) : t("admin.schedule_continuous")) },
        {
          label: t("admin.actions"),
          cell: (entry) => (entry.workspace_id
            ? element("button", {
              type: "button", class: "button button--small button--quiet",
              "aria-label": t("admin.run_now_named", { job: entry.job, workspace: entry.workspace_name }),
              onclick: (event) => runNow(entry, event.currentTarget),
            }, t("admin.run_now"))
            : ""),
        },
      ],
    });
  });
}

async function runNow(entry, button) {
  button.disabled = true;
  await run(async () => {
    await api("/api/v1/admin/schedule/run-now", {
      method: "POST", body: { job: entry.job, workspace_id: entry.workspace_id },
    });
    announce(t("admin.run_now_queued", { job: entry.job }));
    button.textContent = t("admin.run_now_queued_short");
    audited();
  });
  button.disabled = false;
}

// ------------------------------------------------------------------ failed jobs

function describeJob(job) {
  const channel = job.args && job.args.channel;
  return channel ? `${job.job} (${channelLabel(channel)})` : job.job;
}

async function loadFailed() {
  const container = $("nf-failed-list");
  await panel(container, async (current) => {
    const { data } = await api("/api/v1/admin/failed-jobs", { params: { per_page: 50 } });
    if (!current()) return;
    $("nf-retry-all").disabled = data.length === 0;
    table(container, {
      caption: t("admin.failed_title"),
      empty: t("admin.failed_none"),
      rows: data,
      columns: [
        { label: t("admin.job"), cell: (job) => element("code", { text: describeJob(job) }) },
        { label: t("admin.failed_error"), cell: (job) => element("span", { class: "error-text", text: job.error }) },
        { label: t("admin.failed_attempts"), cell: (job) => job.attempts },
        { label: t("admin.failed_at"), cell: (job) => time(job.failed_at) },
        {
          label: t("admin.actions"),
          cell: (job) => element(
            "div", { class: "row-actions" },
            element("button", {
              type: "button", class: "button button--small",
              "aria-label": t("admin.retry_named", { job: describeJob(job) }),
              onclick: () => retry(job),
            }, t("admin.retry")),
            destructiveButton({
              label: t("admin.forget"),
              named: t("admin.forget_named", { job: describeJob(job) }),
              action: () => forget(job),
            }),
          ),
        },
      ],
    });
  });
}

async function retry(job) {
  await run(async () => {
    await api(`/api/v1/admin/failed-jobs/${job.id}/retry`, { method: "POST" });
    const message = t("admin.retried", { job: describeJob(job) });
    setStatus("nf-failed-status", message);
    announce(message);
    await loadFailed();
    audited();
    watchLedger();
  });
}

async function forget(job) {
  await run(async () => {
    await api(`/api/v1/admin/failed-jobs/${job.id}`, { method: "DELETE" });
    const message = t("admin.forgotten", { job: describeJob(job) });
    setStatus("nf-failed-status", message);
    announce(message);
    await loadFailed();
    audited();
  });
}

async function retryAll() {
  await run(async () => {
    // {"retried": [jobs]} (docs/admin.md)
    const { retried } = await api("/api/v1/admin/failed-jobs/retry-all", { method: "POST" });
    const message = t("admin.retried_all", { count: retried.length });
    setStatus("nf-failed-status", message);
    announce(message);
    await loadFailed();
    audited();
    watchLedger();
  });
}

// ------------------------------------------------------------------ deliveries

async function loadOutcomes() {
  const container = $("nf-outcomes-chart");
  await panel(container, async (current) => {
    const { data } = await api("/api/v1/admin/deliveries/outcomes", { params: { hours: 6, bucket_minutes: 15 } });
    if (!current()) return;
    const channels = ["email", "push", "sms"].filter(
      (channel) => channel === "email" || data.buckets.some((bucket) => bucket.counts[channel]),
    );
    const charts = channels.map((channel) => {
      const statuses = Object.keys(STATUS_COLOURS).filter(
        (status) => data.buckets.some((bucket) => (bucket.counts[channel] || {})[status]),
      );
      const stacks = statuses.map((status) => ({
        label: statusLabel(status),
        color: STATUS_COLOURS[status],
        values: data.buckets.map((bucket) => (bucket.counts[channel] || {})[status] || 0),
      }));
      const totals = stacks.map((stack) => `${stack.label}: ${stack.values.reduce((a, b) => a + b, 0)}`);
      const holder = element("div", { class: "chart" });
      const wrapper = element("div", { class: "chart-small" }, element("h4", { text: channelLabel(channel) }), holder);
      stackedBars(holder, {
        times: data.buckets.map((bucket) => bucket.start),
        stacks,
        summary: t("admin.outcomes_summary", {
          channel: channelLabel(channel),
          counts: totals.length ? totals.join(", ") : t("admin.outcomes_nothing"),
        }),
        caption: t("admin.chart_numbers"),
        locale: currentLocale(),
      });
      return wrapper;
    });
    container.replaceChildren(element("div", { class: "chart-grid" }, ...charts));
  });
}

// The search as last submitted: a refresh repeats it, not what is half-typed in the form.
let ledgerSearch = {};

function ledgerFilters() {
  const form = $("nf-ledger-form");
  return {
    user_id: form.user_id.value,
    channel: form.channel.value,
    status: form.status.value,
    reason: form.reason.value.trim(),
  };
}

function ledgerColumns() {
  return [
    { label: t("admin.ledger_when"), cell: (entry) => time(entry.created_at) },
    { label: t("admin.ledger_user"), cell: (entry) => memberName(entry.user_id) },
    {
      label: t("admin.ledger_notification"),
      cell: (entry) => element("span", {}, element("strong", { text: entry.title }), element("br"), typeLabel(entry.type)),
    },
    { label: t("admin.ledger_channel"), cell: (entry) => channelLabel(entry.channel) },
    {
      label: t("admin.ledger_status"),
      cell: (entry) => element("span", { class: `status status--${entry.status}`, "data-status": entry.status }, statusLabel(entry.status)),
    },
    {
      label: t("admin.ledger_reason"),
      cell: (entry) => [reasonLabel(entry.reason), entry.last_error].filter(Boolean).join(" — ") || "–",
    },
    { label: t("admin.failed_attempts"), cell: (entry) => entry.attempts },
  ];
}

let ledgerRows = [];

async function loadLedger({ more = false } = {}) {
  const container = $("nf-ledger");
  await panel(container, async (current) => {
    const params = { ...ledgerSearch, per_page: LEDGER_PAGE };
    if (more && state.ledgerCursor) params.cursor = state.ledgerCursor;
    else params.page = 1;
    const { data, meta } = await api("/api/v1/tenant/deliveries", { params });
    if (!current()) return;
    ledgerRows = more ? [...ledgerRows, ...data] : data;
    state.ledgerPaged = more;
    state.ledgerCursor = meta.next_cursor;
    $("nf-ledger-more").hidden = !meta.next_cursor;
    table(container, {
      caption: t("admin.deliveries_title"),
      empty: t("admin.ledger_none"),
      rows: ledgerRows,
      columns: ledgerColumns(),
    });
    container.setAttribute("aria-busy", "false");
    setStatus("nf-ledger-status-line", meta.total === null || meta.total === undefined
      ? t("admin.ledger_count_shown", { count: ledgerRows.length })
      : t("admin.ledger_count", { count: meta.total }));
  });
}

/** Look at the ledger again every few seconds for a while (after a retry or a send). */
function watchLedger() {
  window.clearInterval(state.watchTimer);
  let times = 0;
  state.watchTimer = window.setInterval(() => {
    times += 1;
    if (times > WATCH_TIMES || state.user === null) { window.clearInterval(state.watchTimer); return; }
    if (!state.ledgerPaged) loadLedger();
    loadOutcomes();
    loadJobs();
  }, WATCH_SECONDS * 1000);
}

// ------------------------------------------------------------------ send

function fillSendForm() {
  const types = $("nf-send-type");
  const chosen = types.value || "system_announcement";
  types.replaceChildren(...ALL_TYPES
    .map((type) => ({ type, label: typeLabel(type) }))
    .sort((a, b) => a.label.localeCompare(b.label, currentLocale()))
    .map(({ type, label }) => element("option", { value: type, selected: type === chosen }, label)));
}

function fillMemberSelects() {
  const members = [...state.members.values()];
  for (const [id, first] of [["nf-send-user", null], ["nf-ledger-user", t("admin.everyone")]]) {
    const select = $(id);
    const chosen = select.value;
    const options = members.map((member) => element("option", { value: member.user_id }, `${member.name} <${member.email}>`));
    if (first !== null) options.unshift(element("option", { value: "" }, first));
    select.replaceChildren(...options);
    if ([...select.options].some((option) => option.value === chosen)) select.value = chosen;
  }
}

async function send(event) {
  event.preventDefault();
  const form = event.currentTarget;
  const toTenant = form.audience.value === "tenant";
  const title = form.title.value.trim();
  const message = form.message.value.trim();
  if (!title || !message || (!toTenant && !form.user_id.value)) {
    setStatus("nf-send-status", t("admin.send_incomplete"));
    return;
  }
  const body = { type: form.type.value, title, message };
  if (toTenant) body.audience = "tenant";
  else body.user_ids = [form.user_id.value];
  const button = form.querySelector("button[type=submit]");
  button.disabled = true;
  setStatus("nf-send-status", t("admin.sending"));
  try {
    const { data } = await api("/api/v1/notifications/send", { method: "POST", body });
    const done = t("admin.sent", { count: data.created });
    setStatus("nf-send-status", done);
    announce(done);
    form.title.value = "";
    form.message.value = "";
    await loadLedger();
    watchLedger();
  } catch (error) {
    if (error.status !== 401) setStatus("nf-send-status", t("error.generic", { message: error.message }));
  } finally {
    button.disabled = false;
  }
}

// ------------------------------------------------------------------ members and invitations

async function loadMembers() {
  const container = $("nf-members");
  await panel(container, async (current) => {
    const { data } = await api("/api/v1/tenant/members", { params: { per_page: 100 } });
    if (!current()) return;
    state.members = new Map(data.map((member) => [member.user_id, member]));
    fillMemberSelects();
    table(container, {
      caption: t("admin.members_title"),
      empty: t("admin.members_none"),
      rows: data,
      columns: [
        { label: t("admin.member_name"), cell: (member) => member.name },
        { label: t("admin.member_email"), cell: (member) => member.email },
        { label: t("admin.member_role"), cell: (member) => roleCell(member) },
        { label: t("admin.member_joined"), cell: (member) => time(member.joined_at) },
        {
          label: t("admin.actions"),
          cell: (member) => (member.user_id === state.user.id
            ? t("admin.member_you")
            : destructiveButton({
              label: t("admin.member_remove"),
              named: t("admin.member_remove_named", { name: member.name || member.email }),
              action: () => removeMember(member),
            })),
        },
      ],
    });
  });
}

function roleCell(member) {
  if (member.user_id === state.user.id) return roleLabel(member.role);
  const select = element("select", {
    class: "compact", "aria-label": t("admin.member_role_named", { name: member.name || member.email }),
    onchange: (event) => changeRole(member, event.currentTarget),
  }, ...["member", "admin", "owner"].map((role) => element("option", { value: role, selected: role === member.role }, roleLabel(role))));
  return select;
}

async function changeRole(member, select) {
  const role = select.value;
  const done = await run(async () => {
    await api(`/api/v1/tenant/members/${member.user_id}`, { method: "PATCH", body: { role } });
    const message = t("admin.member_role_changed", { name: member.name || member.email, role: roleLabel(role) });
    setStatus("nf-members-status", message);
    announce(message);
    return true;
  });
  if (!done) select.value = member.role;
  await loadMembers();
  audited();
}

async function removeMember(member) {
  await run(async () => {
    await api(`/api/v1/tenant/members/${member.user_id}`, { method: "DELETE" });
    const message = t("admin.member_removed", { name: member.name || member.email });
    setStatus("nf-members-status", message);
    announce(message);
  });
  await loadMembers();
  audited();
}

async function loadInvitations() {
  const container = $("nf-invitations");
  await panel(container, async (current) => {
    const { data } = await api("/api/v1/tenant/invitations", { params: { per_page: 100 } });
    if (!current()) return;
    table(container, {
      caption: t("admin.invitations_title"),
      empty: t("admin.invitations_none"),
      rows: data,
      columns: [
        { label: t("admin.invite_email"), cell: (invitation) => invitation.email },
        { label: t("admin.invite_role"), cell: (invitation) => roleLabel(invitation.role) },
        {
          label: t("admin.invite_status"),
          cell: (invitation) => (hasMessage(`admin.invitation.${invitation.status}`) ? t(`admin.invitation.${invitation.status}`) : invitation.status),
        },
        { label: t("admin.invite_expires"), cell: (invitation) => time(invitation.expires_at) },
        {
          label: t("admin.actions"),
          cell: (invitation) => (invitation.status === "pending"
            ? destructiveButton({
              label: t("admin.invite_revoke"),
              named: t("admin.invite_revoke_named", { email: invitation.email }),
              action: () => revoke(invitation),
            })
            : ""),
        },
      ],
    });
  });
}

async function invite(event) {
  event.preventDefault();
  const form = event.currentTarget;
  const email = form.email.value.trim();
  if (!email) { setStatus("nf-invite-status", t("admin.invite_incomplete")); return; }
  try {
    await api("/api/v1/tenant/invitations", { method: "POST", body: { email, role: form.role.value } });
    const message = t("admin.invited", { email });
    setStatus("nf-invite-status", message);
    announce(message);
    form.email.value = "";
    await loadInvitations();
  } catch (error) {
    if (error.status !== 401) setStatus("nf-invite-status", t("error.generic", { message: error.message }));
  }
}

async function revoke(invitation) {
  await run(async () => {
    await api(`/api/v1/tenant/invitations/${invitation.id}`, { method: "DELETE" });
    const message = t("admin.invite_revoked", { email: invitation.email });
    setStatus("nf-invite-status", message);
    announce(message);
  });
  await loadInvitations();
}

// ------------------------------------------------------------------ audit log

function describeChange(entry) {
  const before = entry.before || {};
  const after = entry.after || {};
  const keys = [...new Set([...Object.keys(before), ...Object.keys(after)])];
  if (!keys.length) return "–";
  const show = (value) => (value === undefined ? "–" : JSON.stringify(value));
  return element("ul", { class: "plain-list change" }, ...keys.map((key) => element(
    "li", {}, element("code", { text: key }), `: ${show(before[key])} → ${show(after[key])}`,
  )));
}

/** A member by name (a preference: "member · type"), else the kind and a short id. */
function describeTarget(target) {
  if (!target.id) return target.type;
  const [first, second] = target.id.split(":");
  if (state.members.has(first)) return second ? `${memberName(first)} · ${typeLabel(second)}` : memberName(first);
  return `${target.type} ${target.id.slice(0, 8)}`;
}

let auditRows = [];

async function loadAudit({ more = false } = {}) {
  const container = $("nf-audit-list");
  await panel(container, async (current) => {
    const params = { action: $("nf-audit-action").value, per_page: AUDIT_PAGE };
    if (more && state.auditCursor) params.cursor = state.auditCursor;
    else params.page = 1;
    const { data, meta } = await api("/api/v1/admin/audit-log", { params });
    if (!current()) return;
    auditRows = more ? [...auditRows, ...data] : data;
    state.auditPaged = more;
    state.auditCursor = meta.next_cursor;
    $("nf-audit-more").hidden = !meta.next_cursor;
    table(container, {
      caption: t("admin.audit_title"),
      empty: t("admin.audit_none"),
      rows: auditRows,
      columns: [
        { label: t("admin.ledger_when"), cell: (entry) => time(entry.created_at) },
        { label: t("admin.audit_action"), cell: (entry) => element("code", { text: entry.action }) },
        { label: t("admin.audit_actor"), cell: (entry) => entry.actor.name || entry.actor.email || t("admin.audit_system") },
        { label: t("admin.audit_target"), cell: (entry) => describeTarget(entry.target) },
        { label: t("admin.audit_change"), cell: describeChange },
      ],
    });
  });
}

async function loadAuditActions() {
  await panel($("nf-audit-list"), async (current) => {
    const { data } = await api("/api/v1/admin/audit-log/actions");
    if (!current()) return;
    const select = $("nf-audit-action");
    const chosen = select.value;
    select.replaceChildren(
      element("option", { value: "" }, t("admin.any")),
      ...data.map((action) => element("option", { value: action }, action)),
    );
    if (data.includes(chosen)) select.value = chosen;
  });
}

// ------------------------------------------------------------------ mail folder (development)

async function loadMail() {
  const container = $("nf-mail-list");
  try {
    const { data } = await api("/api/v1/admin/mail", { params: { per_page: 20 } });
    $("nf-mail").hidden = false;
    $("nf-mail-tab").hidden = false;
    table(container, {
      caption: t("admin.mail_title"),
      empty: t("admin.mail_none"),
      rows: data,
      columns: [
        { label: t("admin.mail_date"), cell: (mail) => time(mail.date) },
        { label: t("admin.mail_to"), cell: (mail) => mail.to.join(", ") },
        { label: t("admin.mail_subject"), cell: (mail) => mail.subject },
        {
          label: t("admin.actions"),
          cell: (mail) => element("button", {
            type: "button", class: "button button--small button--quiet",
            "aria-label": t("admin.mail_open_named", { subject: mail.subject }),
            onclick: () => openMail(mail.id),
          }, t("admin.mail_open")),
        },
      ],
    });
  } catch (error) {
    // Not development: the folder does not exist, and neither does the section.
    if (error.status === 404) {
      $("nf-mail").hidden = true;
      $("nf-mail-tab").hidden = true;
    } else if (error.status !== 401) failure(container, error);
  }
}

async function openMail(id) {
  await run(async () => {
    const { data } = await api(`/api/v1/admin/mail/${id}`);
    $("nf-mail-subject").textContent = data.subject;
    $("nf-mail-from").textContent = data.sender;
    $("nf-mail-to").textContent = data.to.join(", ");
    $("nf-mail-date").textContent = data.date ? new Date(data.date).toLocaleString(currentLocale()) : "–";
    $("nf-mail-text").textContent = data.text || t("admin.mail_no_text");
    const message = $("nf-mail-message");
    message.hidden = false;
    message.focus();
  });
}

// ------------------------------------------------------------------ the page

function loaded() {
  $("nf-updated").textContent = t("admin.updated", {
    time: new Intl.DateTimeFormat(currentLocale(), { timeStyle: "medium" }).format(new Date()),
  });
}

async function refresh({ everything = false } = {}) {
  const loads = [loadJobs(), loadNodes(), loadFailed(), loadOutcomes(), loadMail()];
  if (!state.ledgerPaged) loads.push(loadLedger());
  if (everything) {
    loads.push(loadLag(), loadSchedule(), loadInvitations(), loadAuditActions());
    if (!state.auditPaged) loads.push(loadAudit());
  }
  await Promise.all(loads);
  if (state.user !== null) loaded();
}

async function signedIn(user) {
  state.user = user;
  state.generation += 1;
  fillSendForm();
  await loadMembers(); // names for the ledger and the selects
  await refresh({ everything: true });
  window.clearInterval(state.refreshTimer);
  state.refreshTimer = window.setInterval(() => refresh(), REFRESH_SECONDS * 1000);
}

function signedOut() {
  state.user = null;
  state.generation += 1;
  window.clearInterval(state.refreshTimer);
  window.clearInterval(state.watchTimer);
  state.members = new Map();
  fillMemberSelects();
  ledgerRows = [];
  ledgerSearch = {};
  $("nf-ledger-form").reset();
  auditRows = [];
  for (const id of ["nf-nodes", "nf-schedule", "nf-failed-list", "nf-ledger", "nf-members", "nf-invitations", "nf-audit-list", "nf-mail-list", "nf-throughput-chart", "nf-lag-chart", "nf-outcomes-chart"]) {
    $(id).replaceChildren();
    rendered.delete($(id));
  }
  for (const id of ["nf-failed-status", "nf-ledger-status-line", "nf-send-status", "nf-members-status", "nf-invite-status"]) {
    $(id).textContent = "";
  }
  for (const id of ["nf-queue-waiting", "nf-queue-retries", "nf-queue-pending", "nf-connections"]) {
    $(id).textContent = "–";
  }
  $("nf-mail-message").hidden = true;
}

$("nf-refresh").addEventListener("click", () => refresh({ everything: true }));
$("nf-retry-all").addEventListener("click", retryAll);
$("nf-ledger-form").addEventListener("submit", (event) => {
  event.preventDefault();
  ledgerSearch = ledgerFilters();
  loadLedger();
});
$("nf-ledger-more").addEventListener("click", () => loadLedger({ more: true }));
$("nf-audit-action").addEventListener("change", () => loadAudit());
$("nf-audit-more").addEventListener("click", () => loadAudit({ more: true }));
$("nf-send-form").addEventListener("submit", send);
$("nf-invite-form").addEventListener("submit", invite);
$("nf-mail-close").addEventListener("click", () => { $("nf-mail-message").hidden = true; });
for (const radio of document.querySelectorAll("#nf-send-form input[name=audience]")) {
  radio.addEventListener("change", () => {
    $("nf-send-user-field").hidden = $("nf-send-form").audience.value === "tenant";
  });
}
onLocaleChange(() => {
  if (state.user === null) return;
  fillSendForm();
  fillMemberSelects();
  refresh({ everything: true });
  loadMembers();
});

startPage({ roles: ["owner", "admin"], onSignedIn: signedIn, onSignedOut: signedOut });
