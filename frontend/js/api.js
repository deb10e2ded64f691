// The only module that talks to the gateway: the session (tokens), requests, and errors in plain words.

const API = "/api/v1";

// Where tokens live, and why:
// - the access token only in this module's memory: nothing else on the page can read it from storage,
//   and it vanishes with the page;
// - the refresh token in sessionStorage, so reloading this tab keeps the person logged in. sessionStorage
//   belongs to this one tab and is wiped when the tab closes; localStorage would keep a long-lived
//   credential on disk and share it with every tab.
// Tokens never go into URLs (they would end up in history, logs and Referer headers).
const REFRESH_KEY = "fer.refresh_token";
const EARLY_S = 60; // refresh this long before the access token expires

let access = null; // { token, expiresAt (ms) }
let refreshTimer = 0;
let refreshing = null; // one refresh at a time: the server rotates refresh tokens and treats reuse as theft
const endListeners = new Set();

export class ApiError extends Error {
  constructor(status, message, detail = null) {
    super(message);
    this.name = "ApiError";
    this.status = status;
    this.detail = detail;
  }
}

// ---- session ----------------------------------------------------------------------------------------

export function hasSession() {
  return Boolean(access || sessionStorage.getItem(REFRESH_KEY));
}

/** Called with a reason when the session ends on its own (refresh refused); not on an explicit logout. */
export function onSessionEnd(listener) {
  endListeners.add(listener);
}

function store(pair) {
  access = { token: pair.access_token, expiresAt: Date.now() + pair.expires_in * 1000 };
  sessionStorage.setItem(REFRESH_KEY, pair.refresh_token);
  clearTimeout(refreshTimer);
  // Renew ahead of expiry so requests never wait on a refresh; short lifetimes refresh at 80 %.
  const inS = Math.max(pair.expires_in - EARLY_S, pair.expires_in * 0.8);
  refreshTimer = setTimeout(() => refresh().catch(() => {}), inS * 1000);
}

function clear() {
  access = null;
  clearTimeout(refreshTimer);
  sessionStorage.removeItem(REFRESH_KEY);
}

function endSession(reason) {
  clear();
  for (const listener of endListeners) listener(reason);
}

export async function login(email, password) {
  const pair = await request("/auth/token", {
    method: "POST",
    form: { username: email, password },
    auth: false,
    messages: { 401: "Wrong email or password." },
  });
  store(pair);
}

export async function logout() {
  const refreshToken = sessionStorage.getItem(REFRESH_KEY);
  clear();
  if (!refreshToken) return;
  // Revoke server-side too; the local copy is already gone, so a failure here cannot leave the tab logged in.
  try {
    await request("/auth/logout", { method: "POST", json: { refresh_token: refreshToken }, auth: false });
  } catch {
    /* the token expires on its own */
  }
}

/** A fresh token pair from the stored refresh token; ends the session if the server refuses it. */
export function refresh() {
  refreshing ||= (async () => {
    const refreshToken = sessionStorage.getItem(REFRESH_KEY);
    if (!refreshToken) throw new ApiError(401, "Please log in.");
    try {
      store(await request("/auth/refresh", { method: "POST", json: { refresh_token: refreshToken }, auth: false }));
    } catch (error) {
      // 401: revoked, expired or reused: the session is over. Anything else (503, offline) may pass.
      if (error.status === 401 || error.status === 422) {
        endSession("Your session has ended. Please log in again.");
        throw new ApiError(401, "Your session has ended. Please log in again.");
      }
      throw error;
    }
  })().finally(() => {
    refreshing = null;
  });
  return refreshing;
}

async function accessToken() {
  // Timers sleep with a suspended laptop; check the clock as well before every request.
  if (!access || Date.now() > access.expiresAt - 10_000) await refresh();
  return access.token;
}

// ---- requests ---------------------------------------------------------------------------------------

let limitsPromise = null;

/** What the platform accepts (upload size, notes length...), from GET /limits, fetched once. */
export function limits() {
  limitsPromise ??= request("/limits", { auth: false }).catch((failure) => {
    limitsPromise = null; // a later call asks again
    throw failure;
  });
  return limitsPromise;
}

export function megabytes(bytes) {
  return `${Math.round(bytes / 1024 / 1024)} MB`;
}

/**
 * Calls the API and returns the parsed JSON (or the Response when `raw`).
 * Options: method, json, form (x-www-form-urlencoded), body (FormData), auth (default true),
 * raw, onUploadProgress(fraction) for uploads, messages: {status: "plain words"} to override.
 * A 401 with a token refreshes once and retries once.
 */
export async function request(path, options = {}) {
  const { auth = true, raw = false, messages = {} } = options;
  let response = await send(path, options, auth ? await accessToken() : null);
  if (response.status === 401 && auth) {
    await refresh();
    response = await send(path, options, access.token);
    if (response.status === 401) {
      endSession("Your session has ended. Please log in again.");
      throw new ApiError(401, "Your session has ended. Please log in again.");
    }
  }
  if (!response.ok) throw await toError(response, messages);
  if (raw) return response;
  if (response.status === 204) return null;
  return response.json();
}

async function send(path, { method = "GET", json, form, body, onUploadProgress }, token) {
  const headers = { Accept: "application/json" };
  if (token) headers.Authorization = `Bearer ${token}`;
  if (json !== undefined) {
    headers["Content-Type"] = "application/json";
    body = JSON.stringify(json);
  } else if (form) {
    body = new URLSearchParams(form);
  }
  try {
    if (onUploadProgress) return await sendWithProgress(API + path, method, headers, body, onUploadProgress);
    return await fetch(API + path, { method, headers, body, cache: "no-store", credentials: "omit" });
  } catch {
    throw new ApiError(0, "The platform cannot be reached. Check your connection and try again.");
  }
}

// fetch() reports no upload progress; XMLHttpRequest does. The result is wrapped as a Response.
function sendWithProgress(url, method, headers, body, onProgress) {
  return new Promise((resolve, reject) => {
    const xhr = new XMLHttpRequest();
    xhr.open(method, url);
    for (const [name, value] of Object.entries(headers)) xhr.setRequestHeader(name, value);
    xhr.responseType = "blob";
    xhr.upload.onprogress = (event) => event.lengthComputable && onProgress(event.loaded / event.total);
    xhr.upload.onload = () => onProgress(1);
    xhr.onerror = () => reject(new TypeError("network error"));
    xhr.onload = () => {
      const responseHeaders = new Headers();
      for (const line of xhr.getAllResponseHeaders().trim().split(/[\r\n]+/)) {
        const at = line.indexOf(":");
        if (at > 0) responseHeaders.append(line.slice(0, at).trim(), line.slice(at + 1).trim());
      }
      const nullBody = xhr.status === 204 || xhr.status === 205 || xhr.status === 304;
      resolve(new Response(nullBody ? null : xhr.response, { status: xhr.status, headers: responseHeaders }));
    };
    xhr.send(body);
  });
}

// ---- errors in plain words ----------------------------------------------------------------------------

async function toError(response, messages) {
  let detail = null;
  if ((response.headers.get("content-type") || "").includes("json")) {
    try {
      detail = (await response.json()).detail ?? null;
    } catch {
      /* a broken body must not hide the status */
    }
  }
  const status = response.status;
  const message = messages[status] || describe(status, detail, response.headers.get("retry-after"));
  return new ApiError(status, message, detail);
}

function describe(status, detail, retryAfter) {
  if (status === 429) {
    const wait = Number(retryAfter);
    return `Too many attempts. Please wait ${wait > 0 ? `${wait} seconds` : "a few minutes"} and try again.`;
  }
  if (status === 413) return `The file is too large. ${detailText(detail) || "Please choose a smaller image."}`;
  if (status === 502 || status === 503 || status === 504) {
    return "A service the platform depends on is unavailable right now. Please try again in a moment.";
  }
  if (status >= 500) return "Something went wrong on the server. Please try again.";
  const text = detailText(detail);
  if (text) return sentence(text);
  if (status === 401) return "Please log in.";
  if (status === 403) return "You are not allowed to do that.";
  if (status === 404) return "Not found.";
  return "The request was not accepted. Please check what you entered.";
}

// FastAPI sends a string, or a list of {loc, msg} for validation errors.
function detailText(detail) {
  if (typeof detail === "string") return detail;
  if (Array.isArray(detail)) {
    return detail
      .map((item) => {
        const field = (item.loc || []).filter((part) => part !== "body" && typeof part === "string").pop();
        const msg = String(item.msg || "").replace(/^Value error, /, "");
        return field ? `${field.replace(/_/g, " ")}: ${msg}` : msg;
      })
      .join("; ");
  }
  return "";
}

/** "the name is taken" → "The name is taken.": a server's text as a sentence. */
export function sentence(text) {
  const trimmed = text.trim();
  const capital = trimmed.charAt(0).toUpperCase() + trimmed.slice(1);
  return /[.!?]$/.test(capital) ? capital : `${capital}.`;
}

// ---- media pages: downloads, polling, the live socket ---------------------------------------------------

/** "12 KB", "3.4 MB": a file's size for people. */
export function fileSize(bytes) {
  if (bytes < 1024) return `${bytes} bytes`;
  if (bytes < 1024 * 1024) return `${(bytes / 1024).toFixed(0)} KB`;
  return `${(bytes / 1024 / 1024).toFixed(1)} MB`;
}

/**
 * A file the API serves behind the token (CSV, PNG): fetched as a blob, since a plain link could not
 * carry the Authorization header. Returns { blob, name } with the server's file name when it gives one.
 */
export async function fetchFile(path, fallbackName) {
  const response = await request(path, { raw: true });
  const blob = await response.blob();
  const name = dispositionName(response.headers.get("content-disposition")) || fallbackName;
  return { blob, name };
}

/** The file name a Content-Disposition header gives (path separators made harmless), or "". */
function dispositionName(disposition) {
  const match = /filename\*?=(?:UTF-8'')?"?([^";]+)"?/i.exec(disposition || "");
  return match ? decodeURIComponent(match[1]).replace(/[\\/]/g, "_") : "";
}

/** Resolves after `ms`, or at once when `signal` aborts (the page was left), so loops end promptly. */
function pause(ms, signal) {
  return new Promise((resolve) => {
    if (signal?.aborted) return resolve();
    const timer = setTimeout(done, ms);
    signal?.addEventListener("abort", done, { once: true });
    function done() {
      clearTimeout(timer);
      signal?.removeEventListener("abort", done);
      resolve();
    }
  });
}

/**
 * GETs `path` every `everyMs` while `running(body)` holds, handing each answer to `onUpdate`; stops when
 * the work ends (returns the last answer) or the page is left (returns null). A failed poll is retried
 * a few times (a restarting service), then thrown.
 */
export async function pollWhile(path, running, onUpdate, signal, everyMs = 1000) {
  let failures = 0;
  for (;;) {
    let body;
    try {
      body = await request(path);
      failures = 0;
    } catch (error) {
      if (signal?.aborted) return null;
      if (error.status === 404 || error.status === 401 || ++failures > 5) throw error;
      await pause(everyMs * failures, signal);
      continue;
    }
    if (signal?.aborted) return null;
    onUpdate(body);
    if (!running(body)) return body;
    await pause(everyMs, signal);
    if (signal?.aborted) return null;
  }
}

/** The current access token (renewed first when it is about to expire), for the live socket's first message. */
export function currentAccessToken() {
  return accessToken();
}

/** ws:// or wss:// on this page's own origin: the socket follows the page (a proxy that speaks TLS → wss). */
export function socketUrl(path) {
  return `${location.protocol === "https:" ? "wss:" : "ws:"}//${location.host}${API}${path}`;
}

/** The server refused this session's token on a channel other than a request (the live socket's 1008). */
export function sessionRefused() {
  endSession("Your session has ended. Please log in again.");
}

// ---- the operators' console ---------------------------------------------------------------------------

/** A text/plain answer (a training job's log) as a string. */
export async function requestText(path, options = {}) {
  const response = await request(path, { ...options, raw: true });
  return response.text();
}
