/* The lab's REST/WebSocket client: adds the API key and the UI language (the server words its messages —
   errors, dataset findings — in it), turns error bodies into ApiError, and on a 401 asks for a key (once,
   however many requests failed together) and retries. */

import { language } from "./i18n.js";

const KEY_STORAGE = "matelix.apiKey";

export function apiKey() {
  return localStorage.getItem(KEY_STORAGE) || "";
}

export function setApiKey(key) {
  if (key) localStorage.setItem(KEY_STORAGE, key);
  else localStorage.removeItem(KEY_STORAGE);
}

/** An error answer of the lab: `{"error": {"message", "type", "param", "code"}}`. */
export class ApiError extends Error {
  constructor(status, error) {
    super(error?.message || `HTTP ${status}`);
    this.status = status;
    this.param = error?.param || null;
    this.code = error?.code || null;
  }
}

let keyPrompt = null;          // the pending prompt, shared by all requests that got a 401
let askForKey = async () => { throw new ApiError(401, { message: "API key required" }); };

/** The app installs the dialog that asks the user; it resolves with the new key. */
export function onKeyRequired(handler) {
  askForKey = handler;
}

export function requestKey(rejected) {
  if (!keyPrompt) {
    keyPrompt = askForKey(rejected).then((key) => { setApiKey(key); return key; })
      .finally(() => { keyPrompt = null; });
  }
  return keyPrompt;
}

/* X-Requested-With marks the request as the dashboard's own: the server accepts a form upload (not JSON) only
   with it, since another site's page cannot send that header without a CORS preflight the server refuses. */
function authHeaders(headers = {}) {
  const key = apiKey();
  const marked = { ...headers, "X-Requested-With": "matelix-dashboard", "Accept-Language": language() };
  return key ? { ...marked, Authorization: `Bearer ${key}` } : marked;
}

async function errorOf(res) {
  let body = null;
  try { body = await res.json(); } catch { /* not JSON: keep the status text */ }
  const error = body?.error || (body?.detail ? { message: JSON.stringify(body.detail) } : null);
  return new ApiError(res.status, error || { message: `${res.status} ${res.statusText}` });
}

/** fetch with the key; JSON in and out unless `raw` (then the Response is returned for streaming). */
export async function api(path, { method = "GET", body, form, signal, raw = false, headers = {} } = {}) {
  for (;;) {
    const sentKey = apiKey();
    const init = { method, signal, headers: authHeaders(headers) };
    if (form) init.body = form;
    else if (body !== undefined) {
      init.body = JSON.stringify(body);
      init.headers["Content-Type"] = "application/json";
    }
    const res = await fetch(path, init);
    if (res.status === 401) {
      await requestKey(Boolean(sentKey));
      continue;
    }
    if (!res.ok) throw await errorOf(res);
    if (raw) return res;
    return res.status === 204 ? null : res.json();
  }
}

/** ws:// URL for a path on this origin, with the key as `api_key` and the UI language as `lang` (browsers
    cannot set WS headers). */
export function wsUrl(path, params = {}) {
  const url = new URL(path, location.href);
  url.protocol = location.protocol === "https:" ? "wss:" : "ws:";
  for (const [k, v] of Object.entries(params)) if (v !== undefined && v !== null) url.searchParams.set(k, v);
  url.searchParams.set("lang", language());
  const key = apiKey();
  if (key) url.searchParams.set("api_key", key);
  return url.toString();
}
