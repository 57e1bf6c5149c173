// How the dashboard talks to the node: JSON POSTs to the public API, with the token the user
// typed (kept in sessionStorage, so it leaves with the tab) as a bearer token. Every call goes
// to the member the page follows now: the one that served it, or another while that one is
// down (app.js); the members answer those cross-origin calls for each other's pages.

import { $ } from './util.js';

export const tokenKey = 'flotilla-token';

/** The origin of the member the page follows; '' while it is the one that served the page. */
let memberBase = '';

export function setMemberBase(origin) {
  memberBase = origin;
}

/** `path` on the member the page follows now. */
export function memberUrl(path) {
  return memberBase + path;
}

/** The Authorization header of the token typed in, if any. */
export function authHeaders() {
  const t = sessionStorage.getItem(tokenKey) ?? '';
  return t === '' ? {} : { authorization: `Bearer ${t}` };
}

/** An error answered by the node: its stable code and message. */
export class ApiError extends Error {
  constructor(code, message, status) {
    super(message);
    this.code = code;
    this.status = status;
  }
}

/** POSTs a JSON body to the node's API; resolves with the answer or throws an ApiError. */
export async function api(path, body, o = {}) {
  const res = await fetch(memberUrl(path), {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...authHeaders() },
    body: JSON.stringify(body),
    signal: o.signal,
  });
  const text = await res.text();
  let json = null;
  try {
    json = JSON.parse(text);
  } catch {
    // not JSON: reported below by status
  }
  if (!res.ok)
    throw new ApiError(
      json?.error?.code ?? `HTTP_${res.status}`,
      json?.error?.message ?? text,
      res.status,
    );
  return json;
}

/** Asks for confirmation in a modal dialog; resolves true when confirmed. */
export function confirmAction(text) {
  const dialog = $('confirm');
  $('confirm-text').textContent = text;
  $('confirm-ok').onclick = () => dialog.close('ok');
  $('confirm-cancel').onclick = () => dialog.close('cancel');
  // Escape closes it too, with no return value: cancelled.
  dialog.returnValue = '';
  dialog.showModal();
  $('confirm-cancel').focus();
  return new Promise((resolve) => {
    dialog.addEventListener('close', () => resolve(dialog.returnValue === 'ok'), { once: true });
  });
}

/** A one-line account of an error for a result area. */
export function describeError(err) {
  return err instanceof ApiError ? `${err.code}: ${err.message}` : String(err?.message ?? err);
}
