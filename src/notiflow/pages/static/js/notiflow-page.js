// notiflow-page.js: what every notiflow page shares (no build step; an ES module).
//
//   import { startPage, api, t } from "./notiflow-page.js";
//   startPage({ onSignedIn: (user) => ..., onSignedOut: () => ... });
//
// - Sign-in: email + password through POST /api/v1/auth/login, or a pasted API token. The
//   token is kept in localStorage ("notiflow:token"), so every tab of the site is signed in and
//   signing out in one tab signs out all of them; "Sign out" removes it.
// - api(): fetch with the bearer token and the API's JSON error shape; a 401 signs out.
// - Messages: t(key, params) from the catalogues the server embedded (#nf-messages); elements
//   with data-i18n="key" (text) or data-i18n-attr="attr:key;attr:key" are re-translated when
//   the language changes. The language: the one chosen in the switch (localStorage
//   "notiflow:locale"), else the browser's (Accept-Language, which the server rendered the page
//   in), else the user's profile locale, else English.

const TOKEN_KEY = "notiflow:token";
const LOCALE_KEY = "notiflow:locale";
const CATALOGUES = JSON.parse(document.getElementById("nf-messages").textContent);
const localeListeners = [];
let locale = document.documentElement.lang || "en";

// ------------------------------------------------------------------ storage (may be blocked)

function stored(key) {
  try { return window.localStorage.getItem(key); } catch (error) { return null; }
}

function store(key, value) {
  try {
    if (value === null) window.localStorage.removeItem(key);
    else window.localStorage.setItem(key, value);
  } catch (error) { /* private mode: this tab only */ }
}

// ------------------------------------------------------------------ messages

export function t(key, params = {}) {
  const text = (CATALOGUES[locale] || {})[key] ?? CATALOGUES.en[key] ?? key;
  return text.replace(/\{(\w+)\}/g, (whole, name) => (name in params ? String(params[name]) : whole));
}

export function hasMessage(key) {
  return key in CATALOGUES.en;
}

export function currentLocale() {
  return locale;
}

export function translateDom(root = document) {
  for (const element of root.querySelectorAll("[data-i18n]")) {
    element.textContent = t(element.dataset.i18n);
  }
  for (const element of root.querySelectorAll("[data-i18n-attr]")) {
    for (const pair of element.dataset.i18nAttr.split(";")) {
      const [attribute, key] = pair.split(":");
      element.setAttribute(attribute, t(key));
    }
  }
}

export function setLocale(code) {
  if (!(code in CATALOGUES) || code === locale) return;
  locale = code;
  document.documentElement.lang = code;
  const select = document.getElementById("nf-language");
  if (select) select.value = code;
  translateDom();
  for (const listener of localeListeners) listener(code);
}

export function onLocaleChange(listener) {
  localeListeners.push(listener);
}

function supportedLocale(tag) {
  const language = String(tag || "").replace("_", "-").split("-")[0].toLowerCase();
  return language in CATALOGUES ? language : null;
}

export function formatTime(iso) {
  if (!iso) return "";
  const when = new Date(iso);
  const seconds = Math.round((when.getTime() - Date.now()) / 1000);
  const format = new Intl.RelativeTimeFormat(locale, { numeric: "auto" });
  const steps = [[60, "second"], [60, "minute"], [24, "hour"], [7, "day"]];
  let value = seconds;
  for (const [size, unit] of steps) {
    if (Math.abs(value) < size) return format.format(value, unit);
    value = Math.round(value / size);
  }
  return new Intl.DateTimeFormat(locale, { dateStyle: "medium", timeStyle: "short" }).format(when);
}

// ------------------------------------------------------------------ the API

export class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

export function getToken() {
  return stored(TOKEN_KEY);
}

let signedOutHandler = () => {};

export async function api(path, { method = "GET", body, params, token = getToken(), auth = true } = {}) {
  // Signed out meanwhile (another tab, or the user): no request, no 401 from the server.
  if (auth && !token) throw new ApiError(401, "unauthenticated", t("signin.expired"));
  const url = new URL(path, window.location.origin);
  for (const [name, value] of Object.entries(params || {})) {
    if (value !== undefined && value !== null && value !== "") url.searchParams.set(name, value);
  }
  const headers = { Accept: "application/json" };
  if (token) headers.Authorization = `Bearer ${token}`;
  if (body !== undefined) headers["Content-Type"] = "application/json";
  let response;
  try {
    response = await fetch(url, {
      method, headers, body: body === undefined ? undefined : JSON.stringify(body),
    });
  } catch (error) {
    throw new ApiError(0, "network_error", t("error.offline"));
  }
  if (response.status === 204) return null;
  const payload = await response.json().catch(() => null);
  if (!response.ok) {
    const error = (payload && payload.error) || {};
    if (response.status === 401 && token && token === getToken()) signedOutHandler(true);
    throw new ApiError(response.status, error.code || "http_error", error.message || response.statusText);
  }
  return payload;
}

// ------------------------------------------------------------------ page state

export function showPageError(message) {
  const element = document.getElementById("nf-page-error");
  element.textContent = message ? t("error.generic", { message }) : "";
  element.hidden = !message;
}

function setState(state) {
  document.body.dataset.state = state;
}

function signInStatus(message) {
  const element = document.getElementById("nf-sign-in-status");
  element.textContent = message || "";
  element.hidden = !message;
}

/**
 * Wire the shared parts of a page and sign in. `onSignedIn(user)` gets GET /api/v1/user's data
 * (the page then loads its own data); `onSignedOut()` must drop what the page shows. `roles`
 * (e.g. ["owner", "admin"]) limits the page to those tenant roles: anyone else sees the "not for
 * your account" panel and the page loads nothing. (The API refuses them anyway, with 403: this
 * only spares them a page of errors.)
 */
export function startPage({ onSignedIn, onSignedOut, roles = null }) {
  const language = document.getElementById("nf-language");
  language.addEventListener("change", () => {
    store(LOCALE_KEY, language.value);
    setLocale(language.value);
  });
  const chosen = supportedLocale(stored(LOCALE_KEY));
  if (chosen) setLocale(chosen);

  let user = null;
  const showUser = () => {
    const element = document.getElementById("nf-user");
    element.textContent = user ? t("layout.signed_in_as", { name: user.name || user.email }) : "";
    document.getElementById("nf-forbidden-text").textContent = user ? t("layout.forbidden", { role: hasMessage(`role.${user.role}`) ? t(`role.${user.role}`) : user.role }) : "";
    for (const link of document.querySelectorAll("[data-roles]")) {
      link.hidden = !user || !link.dataset.roles.split(" ").includes(user.role);
    }
  };
  onLocaleChange(showUser);

  async function enter(token) {
    const { data } = await api("/api/v1/user", { token });
    store(TOKEN_KEY, token);
    user = data;
    if (!stored(LOCALE_KEY) && document.documentElement.dataset.localeNegotiated !== "true") {
      const profile = supportedLocale(data.locale);
      if (profile) setLocale(profile);
    }
    signInStatus("");
    showUser();
    if (roles && !roles.includes(data.role)) {
      setState("forbidden");
      return;
    }
    setState("signed-in");
    await onSignedIn(data);
  }

  function leave(expired) {
    store(TOKEN_KEY, null);
    const wasSignedIn = user !== null && document.body.dataset.state === "signed-in";
    user = null;
    setState("signed-out");
    if (wasSignedIn) onSignedOut();
    if (expired) signInStatus(t("signin.expired"));
  }
  signedOutHandler = leave;

  document.getElementById("nf-login-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    const form = event.currentTarget;
    const button = form.querySelector("button[type=submit]");
    button.disabled = true;
    button.textContent = t("signin.signing_in");
    signInStatus("");
    try {
      const { data } = await api("/api/v1/auth/login", {
        method: "POST",
        auth: false,
        token: null,
        body: { email: form.email.value.trim(), password: form.password.value },
      });
      form.password.value = "";
      await enter(data.token);
    } catch (error) {
      const known = { 401: "signin.failed", 422: "signin.failed", 429: "signin.throttled" };
      signInStatus(known[error.status] ? t(known[error.status]) : t("error.generic", { message: error.message }));
    } finally {
      button.disabled = false;
      button.textContent = t("signin.submit");
    }
  });

  document.getElementById("nf-token-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    const form = event.currentTarget;
    const token = form.token.value.trim();
    if (!token) return;
    try {
      await enter(token);
      form.token.value = "";
    } catch (error) {
      signInStatus(error.status === 401 ? t("signin.bad_token") : t("error.generic", { message: error.message }));
    }
  });

  document.getElementById("nf-sign-out").addEventListener("click", () => leave(false));

  // Another tab signed in or out: follow it.
  window.addEventListener("storage", (event) => {
    if (event.key !== TOKEN_KEY) return;
    if (event.newValue === null) leave(false);
    else if (user === null) enter(event.newValue).catch(() => leave(false));
  });

  const token = getToken();
  if (token) {
    enter(token).catch((error) => {
      if (error.status === 401) leave(true);
      else { setState("signed-out"); showPageError(error.message); }
    });
  } else {
    setState("signed-out");
  }
}
