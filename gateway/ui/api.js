// api.js: the console's one door to the gateway. It calls the public API
// only, with the user's bearer token, which lives in sessionStorage (never in
// a URL query, never in a log). A sign-in link carries it in the fragment
// (`/ui/#token=…`), which browsers never send to a server; it is moved to
// sessionStorage and wiped from the address bar at once.

const KEY = 'mcp.console.token';

/**
 * Take a token from the fragment (`#token=…[&view=…]`), store it and wipe
 * it from the address bar (and the history entry). Returns the view to open.
 */
export function adoptFragmentToken() {
  const fragment = location.hash.replace(/^#/, '');
  if (!/(^|&)token=/.test(fragment)) return null;
  const params = new URLSearchParams(fragment);
  const token = (params.get('token') || '').trim();
  if (token) sessionStorage.setItem(KEY, token);
  const view = params.get('view') || 'services';
  history.replaceState(null, '', `${location.pathname}#/${view}`);
  return view;
}

/** The token, or null before sign-in. */
export function token() {
  return sessionStorage.getItem(KEY);
}

/** Keep a pasted token for this tab's session. */
export function signIn(value) {
  sessionStorage.setItem(KEY, value.trim().replace(/^Bearer\s+/i, ''));
}

/** Forget the token. */
export function signOut() {
  sessionStorage.removeItem(KEY);
}

/** The token's claims (decoded, not verified: the gateway verifies). */
export function claims() {
  const t = token();
  if (!t) return {};
  try {
    const part = t.split('.')[1].replace(/-/g, '+').replace(/_/g, '/');
    const padded = part + '='.repeat((4 - (part.length % 4)) % 4);
    const bytes = Uint8Array.from(atob(padded), (c) => c.charCodeAt(0));
    return JSON.parse(new TextDecoder().decode(bytes));
  } catch {
    return {};
  }
}

/**
 * Whether the token's scopes allow `access` ('read' | 'write') in `area`
 * to `name`: the gateway's rule (mcp_shared::scope), so the console shows
 * no button the gateway would refuse. Without a name, a read needs any
 * grant of the area and a write a grant of the whole area.
 */
export function can(area, access, name) {
  const scope = claims().scope;
  const list = Array.isArray(scope) ? scope : String(scope || '').split(/\s+/);
  return list.some((grant) => {
    if (grant === 'admin') return true;
    const parts = grant.split(':');
    if (parts.length < 2 || parts.length > 3 || parts[0] !== area || parts[1] !== access) return false;
    const names = parts.length === 3 && parts[2] !== '*' ? parts[2] : null;
    if (name === undefined || name === null) return access === 'read' || names === null;
    if (names === null) return true;
    return names.endsWith('*') ? name.startsWith(names.slice(0, -1)) : name === names;
  });
}

/** An API refusal with the problem+json body and a sentence for people. */
export class ApiError extends Error {
  constructor(status, problem) {
    super(explain(status, problem));
    this.status = status;
    this.problem = problem || {};
  }
}

/** One sentence that says what went wrong and what to do. */
export function explain(status, problem = {}) {
  const detail = problem.detail || problem.title || '';
  switch (status) {
    case 0:
      return `The gateway cannot be reached (${detail || 'network error'}).`;
    case 401:
      return `The gateway refused the token (${detail || 'missing, expired or invalid'}): sign in again with a valid token.`;
    case 403:
      return problem.required_scope
        ? `Your token lacks the scope “${problem.required_scope}”: ask for a token that has it.`
        : `Forbidden: ${detail}`;
    case 412:
      return `Someone saved this key since you opened it (${detail}). Nothing was written: reload to see the current version, then apply your change again.`;
    case 422:
      return `Refused: ${detail}`;
    case 429:
      return 'Too many requests: the gateway rate-limits this token; wait a moment.';
    default:
      return detail ? `${detail} (HTTP ${status})` : `HTTP ${status}`;
  }
}

/** Encode each segment of a name that may hold `/` (config keys). */
export function seg(name) {
  return String(name).split('/').map(encodeURIComponent).join('/');
}

/**
 * `method` on `path` with the token; resolves to {status, ok, headers, body}
 * (body parsed when JSON), never rejects on an HTTP status.
 */
export async function request(method, path, { body, headers = {} } = {}) {
  const init = { method, headers: { Accept: 'application/json', ...headers }, cache: 'no-store' };
  const t = token();
  if (t) init.headers.Authorization = `Bearer ${t}`;
  if (body !== undefined) {
    init.headers['Content-Type'] = 'application/json';
    init.body = JSON.stringify(body);
  }
  let response;
  try {
    response = await fetch(path, init);
  } catch (e) {
    return { status: 0, ok: false, headers: new Headers(), body: { detail: e.message } };
  }
  const type = response.headers.get('content-type') || '';
  let parsed = null;
  if (type.includes('json')) parsed = await response.json().catch(() => null);
  else if (response.status !== 204) parsed = await response.text().catch(() => null);
  return { status: response.status, ok: response.ok, headers: response.headers, body: parsed };
}

/** GET `path`: the body, or an ApiError. */
export async function get(path) {
  const r = await request('GET', path);
  if (!r.ok) throw new ApiError(r.status, r.body);
  return r.body;
}

/**
 * Follow an SSE stream with the token (EventSource cannot send a header):
 * fetch with a streaming body, parse the event stream, resume with
 * Last-Event-ID after a drop. `onEvent({id, event, data})`,
 * `onState(state, detail)` with 'live' | 'retrying' | 'refused'.
 * Returns a function that stops it.
 */
export function follow(path, onEvent, onState) {
  let stopped = false;
  let controller = null;
  let lastId = null;
  const dispatch = (ev) => {
    if (ev.id !== null) lastId = ev.id;
    if (ev.data.length === 0) return;
    let data = ev.data.join('\n');
    try {
      data = JSON.parse(data);
    } catch {
      /* keep the text */
    }
    onEvent({ id: lastId, event: ev.event || 'message', data });
  };
  (async () => {
    let delay = 500;
    while (!stopped) {
      controller = new AbortController();
      try {
        const headers = { Accept: 'text/event-stream', Authorization: `Bearer ${token()}` };
        if (lastId !== null) headers['Last-Event-ID'] = lastId;
        const response = await fetch(path, { headers, signal: controller.signal, cache: 'no-store' });
        if (!response.ok) {
          const problem = await response.json().catch(() => ({}));
          if (response.status === 401 || response.status === 403 || response.status === 404) {
            onState('refused', explain(response.status, problem));
            return;
          }
          throw new Error(explain(response.status, problem));
        }
        onState('live');
        delay = 500;
        const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
        let buffer = '';
        let ev = { id: null, event: '', data: [] };
        for (;;) {
          const { value, done } = await reader.read();
          if (done) break;
          buffer += value;
          let at;
          while ((at = buffer.indexOf('\n')) >= 0) {
            const line = buffer.slice(0, at).replace(/\r$/, '');
            buffer = buffer.slice(at + 1);
            if (line === '') {
              dispatch(ev);
              ev = { id: null, event: '', data: [] };
              continue;
            }
            if (line.startsWith(':')) continue; // comment (keep-alive)
            const colon = line.indexOf(':');
            const field = colon < 0 ? line : line.slice(0, colon);
            const value = colon < 0 ? '' : line.slice(colon + 1).replace(/^ /, '');
            if (field === 'data') ev.data.push(value);
            else if (field === 'event') ev.event = value;
            else if (field === 'id') ev.id = value;
          }
        }
      } catch (e) {
        if (stopped) return;
        onState('retrying', e.message);
      }
      if (stopped) return;
      onState('retrying');
      await new Promise((resolve) => setTimeout(resolve, delay));
      delay = Math.min(delay * 2, 10000);
    }
  })();
  return () => {
    stopped = true;
    if (controller) controller.abort();
  };
}
