// tidings.js: the browser SDK of Tidings, one ES module without
// dependencies. Served by every Tidings server at /sdk/tidings.js, with
// TypeScript declarations at /sdk/tidings.d.ts.
//
//   import { Client } from '/sdk/tidings.js';
//   const client = new Client(location.origin, { token, device: 'laptop' });
//   client.addEventListener(ev => console.log(ev.name, ev.payload));
//
// It mirrors the Go SDK (package client): a Client is a connection to a
// server for its user (the account "default") and for any other accounts
// added with addAccount, each with its own token, device, refs and
// cursor; every update names its account (ev.account). In auto mode (the
// default) it opens the realtime connection as soon as it is logged in and
// reconnects by itself, with exponential backoff and jitter, each account
// resuming after the last of its updates the listeners processed. In
// manual mode the application calls connect, disconnect and ping. Updates
// reach every event listener once, in order; an update is acknowledged to
// the server only once every listener has returned (or the promise it
// returned has settled), with replies coalesced per account (at most one
// every 250 ms, or after 64 updates, and at once before a disconnection, a
// logout or the page hiding). The realtime connection is a WebSocket, or
// long polling when WebSockets are not available or cannot open (a proxy
// that blocks upgrades), with a WebSocket tried again every
// upgradeInterval; polls are per token, so each account polls on its own.
// Tokens travel in the first WebSocket frame and in Authorization headers,
// never in a URL. The protocol is described in docs/protocol.md: the
// WebSocket speaks tidings.v2 (fewer bytes per update) when the server
// does, else tidings.v1; listeners get the same events either way.

const V1 = 'tidings.v1';
const V2 = 'tidings.v2';
const DEFAULT_ACCOUNT = 'default';
// Replies are cumulative: one per account at most every ACK_DELAY ms, or
// after ACK_EVERY updates processed, whichever comes first.
const ACK_DELAY = 250;
const ACK_EVERY = 64;

/**
 * The state of the realtime connection.
 * @readonly
 * @enum {string}
 */
export const Status = Object.freeze({
  /** No connection, and none is being opened. */
  Disconnected: 'disconnected',
  /** A first connection is being opened. */
  Connecting: 'connecting',
  /** The connection is open and authenticated: updates flow. */
  Connected: 'connected',
  /** The connection was lost; a new one is being opened, with backoff. */
  Reconnecting: 'reconnecting',
  /** The client was closed. */
  Closed: 'closed',
});

/**
 * The codes of the errors made by the SDK itself; the server's errors
 * carry the codes of the API (not_found, forbidden…).
 * @readonly
 * @enum {string}
 */
export const ErrorCode = Object.freeze({
  NotLoggedIn: 'not_logged_in',
  AlreadyLoggedIn: 'already_logged_in',
  AlreadyConnected: 'already_connected',
  NotConnected: 'not_connected',
  Closed: 'closed',
  AutoMode: 'auto_mode',
  ConnectionLost: 'connection_lost',
  BackgroundTimeout: 'background_timeout',
  TokenRejected: 'token_rejected',
  Network: 'network_error',
  Timeout: 'timeout',
});

/** An error of the server (code from the API) or of the SDK (ErrorCode). */
export class TidingsError extends Error {
  /**
   * @param {string} code
   * @param {string} message
   * @param {{status?: number, ref?: string, closeCode?: number, cause?: unknown}} [more]
   */
  constructor(code, message, more = {}) {
    super(message, more.cause === undefined ? undefined : { cause: more.cause });
    this.name = 'TidingsError';
    /** @type {string} */ this.code = code;
    /** The HTTP status, for errors of the REST API. @type {number|undefined} */ this.status = more.status;
    /** With resync_required: the newest ref. @type {string|undefined} */ this.ref = more.ref;
    /** The WebSocket close code, when the server closed the connection. @type {number|undefined} */
    this.closeCode = more.closeCode;
  }
}

const sdkError = (code, message, more) => new TidingsError(code, message, more);

/** @type {Required<import('./tidings.d.ts').Backoff>} */
export const DefaultBackoff = Object.freeze({ initial: 500, max: 30000, multiplier: 2, jitter: 0.5 });

/**
 * The wait in milliseconds after `failures` consecutive failures (0 for
 * the first): initial×multiplier^failures, at most max, less a random part
 * of up to `jitter` of it so that clients do not all come back at once.
 * @param {import('./tidings.d.ts').Backoff} b
 * @param {number} failures
 */
export function backoffDelay(b, failures) {
  const { initial, max, multiplier, jitter } = { ...DefaultBackoff, ...b };
  let d = initial;
  for (let i = 0; i < failures && d < max; i++) d *= multiplier;
  d = Math.min(d, max);
  return d - d * Math.min(Math.max(jitter, 0), 1) * Math.random();
}

const newEvents = new Set(['conversation.create', 'conversation.participantAdded', 'conversationMessage.sent',
  'conversation.participantTyping']);
const deleteEvents = new Set(['conversation.delete', 'conversation.participantRemoved', 'conversationMessage.deleted',
  'conversation.participantTypingOff', 'account.closed']);

/**
 * Whether the events of this name make something new, change something or
 * remove something: "new", "update" or "delete" (servers before 2026-12
 * sent it in each update frame).
 * @param {string} name
 */
function actionOf(name) {
  return newEvents.has(name) ? 'new' : deleteEvents.has(name) ? 'delete' : 'update';
}

/**
 * The event of an update frame as listeners get it: with what the server
 * leaves out of the wire because the frame, the account or the payload
 * already says it (docs/protocol.md, "The event object").
 */
function fullEvent(frame, sess) {
  const e = frame.event || {};
  const ev = { ...e, ref: frame.ref || '', silent: !!frame.silent, action: frame.action || actionOf(e.name), account: frame.account || 'default' };
  if (ev.seq === undefined) ev.seq = frame.ref ? Number(frame.ref) : 0;
  if (ev.app === undefined) ev.app = sess?.appId || '';
  const p = e.payload;
  // A sent message's event has its message's id, sent once (in the payload).
  if (ev.id === undefined && e.name === 'conversationMessage.sent' && p) ev.id = p.id;
  if (/^conversationMessage\.(sent|edited|deleted)$/.test(e.name) && p && p.sender) {
    const m = ev.payload = { ...p };
    // A part without a type is text/plain.
    if (Array.isArray(p.parts)) m.parts = p.parts.map(part => (part.type === undefined ? { type: 'text/plain', ...part } : part));
    m.conversationId ??= e.conversationId;
    m.sentAt ??= e.time;
    m.messageId ??= m.id;
    m.profileId ??= m.sender.id;
    m.timestamp ??= m.sentAt;
    // The actor of a sent message is its sender, left out (an edit's is its id only).
    if ((!e.actor && e.name === 'conversationMessage.sent' && m.sender.id) ||
      (e.actor && e.actor.id === m.sender.id && e.actor.displayName === undefined)) ev.actor = m.sender;
  }
  return ev;
}

/**
 * The message that the answer r to a message.send of m (to conversationId)
 * stands for: a new message is answered with what the server added (id,
 * seq, sender, sentAt, and parts it changed), the rest is the command's; a
 * duplicate (its clientId named a message already stored) with that message
 * whole (docs/protocol.md, message.send).
 */
function sentMessage(conversationId, m, r) {
  const { duplicate, ...out } = r;
  if (duplicate) {
    out.parts ??= [];
    return out;
  }
  out.conversationId = conversationId;
  for (const k of ['clientId', 'parts', 'metadata', 'alert']) {
    if (out[k] === undefined && m[k] !== undefined && m[k] !== null && m[k] !== '') out[k] = m[k];
  }
  return out;
}

// ---- tidings.v2 ----------------------------------------------------------
//
// A tidings.v2 frame says what a tidings.v1 frame says, with short keys,
// times in microseconds and message.X for conversationMessage.X
// (docs/protocol.md, "tidings.v2"); the functions below turn what the
// server sends back into tidings.v1, so that everything past SocketConn
// reads one form.

/**
 * The time of us microseconds since the Unix epoch as tidings.v1 writes
 * it: RFC 3339 in UTC, the fraction without trailing zeros.
 */
function timeV1(us) {
  const ms = Math.floor(us / 1000);
  const frac = String(us % 1000000).padStart(6, '0').replace(/0+$/, '');
  return new Date(ms).toISOString().replace(/\.\d{3}Z$/, frac ? '.' + frac + 'Z' : 'Z');
}

/** A tidings.v2 Profile in tidings.v1; reduced, an actor named by its id only. */
function profileV1(p, reduced) {
  if (reduced && p.n === undefined && p.av === undefined && p.idf === undefined) return { id: p.i };
  const out = { id: p.i, displayName: p.n ?? '' };
  if (p.av !== undefined) out.avatarUrl = p.av;
  if (p.idf !== undefined) out.identifier = p.idf;
  return out;
}

/** tidings.v2 Parts in tidings.v1 (a part without a type is text/plain). */
function partsV1(parts) {
  return (parts || []).map(p => {
    const out = { type: p.t ?? 'text/plain' };
    if (p.n !== undefined) out.name = p.n;
    if (p.d !== undefined) out.data = p.d;
    if (p.f !== undefined) out.fileId = p.f;
    if (p.z !== undefined) out.size = p.z;
    return out;
  });
}

/** Sets out[k] to f(v) when v is present. */
function maybe(out, k, v, f = x => x) {
  if (v !== undefined && v !== null) out[k] = f(v);
}

const messageEvents = new Set(['conversationMessage.sent', 'conversationMessage.edited', 'conversationMessage.deleted']);

/** The tidings.v1 event of a tidings.v2 event object. */
function eventV1(e) {
  const name = /^message\./.test(e.n) ? 'conversation' + e.n[0].toUpperCase() + e.n.slice(1) : e.n;
  const ev = { name, time: timeV1(e.t) };
  maybe(ev, 'id', e.i);
  maybe(ev, 'actor', e.a, a => profileV1(a, name === 'conversationMessage.edited'));
  maybe(ev, 'conversationId', e.c);
  maybe(ev, 'userId', e.u);
  const m = e.p;
  if (!messageEvents.has(name) || !m || typeof m !== 'object') {
    ev.payload = m;
    return ev;
  }
  const p = { id: m.i, conversationId: e.c, seq: m.q, sender: profileV1(m.s || { i: '' }) };
  if (m.sys) p.system = true;
  maybe(p, 'clientId', m.cid);
  p.parts = partsV1(m.p);
  maybe(p, 'metadata', m.m);
  maybe(p, 'alert', m.al);
  p.sentAt = m.st ? timeV1(m.st) : ev.time;
  maybe(p, 'editedAt', m.et || undefined, timeV1);
  maybe(p, 'deletedAt', m.dt || undefined, timeV1);
  maybe(p, 'referrerId', m.rid);
  ev.payload = p;
  return ev;
}

/** The tidings.v1 result of message.send of a tidings.v2 one (without its r). */
function sendResultV1(r) {
  const out = { id: r.i };
  maybe(out, 'conversationId', r.c);
  out.seq = r.q;
  out.sender = profileV1(r.s || { i: '' });
  if (r.sys) out.system = true;
  maybe(out, 'clientId', r.cid);
  maybe(out, 'parts', r.p, partsV1);
  maybe(out, 'metadata', r.m);
  maybe(out, 'alert', r.al);
  out.sentAt = timeV1(r.t);
  maybe(out, 'editedAt', r.et || undefined, timeV1);
  maybe(out, 'deletedAt', r.dt || undefined, timeV1);
  if (r.dup) out.duplicate = true;
  return out;
}

/** Compares two refs (decimal strings, up to 2^63-1) as integers. */
function refAfter(a, b) {
  if (!b) return !!a;
  if (!a) return false;
  return BigInt(a) > BigInt(b);
}

/** The claims of a JWT, read without verifying it (only the server can). */
function jwtClaims(token) {
  try {
    const part = token.split('.')[1].replace(/-/g, '+').replace(/_/g, '/');
    return JSON.parse(atob(part + '='.repeat((4 - (part.length % 4)) % 4)));
  } catch {
    return {};
  }
}

/**
 * Keeps a token from a provider and asks for a new one when it nears its
 * expiry or was rejected. Concurrent callers share one provider call.
 */
class TokenSource {
  constructor(provider, isStatic, margin) {
    this.provider = provider;
    this.static = isStatic;
    this.margin = margin;
    this.token = '';
    this.exp = 0; // ms since the epoch; 0 when unknown
    this.obtained = 0;
    this.rejected = '';
    this.pending = null;
  }

  /** When the token should be replaced (0: never). */
  refreshAt() {
    if (this.static || !this.exp) return 0;
    // Never before half its lifetime, so short-lived tokens do not loop.
    return Math.max(this.exp - this.margin, this.obtained + (this.exp - this.obtained) / 2);
  }

  async get() {
    const at = this.refreshAt();
    if (this.token && (!at || Date.now() < at)) return this.token;
    if (!this.pending) {
      this.pending = (async () => {
        const tok = await this.provider();
        if (!tok || tok === this.rejected) {
          throw sdkError(ErrorCode.TokenRejected, 'the token provider gave a token the server rejected');
        }
        this.token = tok;
        this.exp = (jwtClaims(tok).exp || 0) * 1000;
        this.obtained = Date.now();
        return tok;
      })().finally(() => { this.pending = null; });
    }
    return this.pending;
  }

  reject(tok) {
    if (tok && tok === this.token) {
      this.rejected = tok;
      this.token = '';
    }
  }
}

/** Thrown by a connection attempt when the server no longer has the updates asked for. */
class ResyncError extends Error {
  constructor(ref, cause) {
    super('resync required', { cause });
    this.ref = ref || '';
  }
}

/** Rejects after ms with a timeout error, unless p settles first. */
function withTimeout(p, ms, what) {
  if (!ms || ms <= 0) return p;
  let t;
  return Promise.race([
    p,
    new Promise((_, reject) => { t = setTimeout(() => reject(sdkError(ErrorCode.Timeout, `${what}: no answer within ${ms} ms`)), ms); }),
  ]).finally(() => clearTimeout(t));
}

/**
 * One WebSocket connection: commands matched to their answers by id,
 * updates handed to onUpdate in order, in tidings.v1 form whichever
 * protocol the server chose among protocols. Several accounts may be
 * authenticated on it; commands and replies name theirs.
 */
class SocketConn {
  constructor(url, onUpdate, protocols) {
    this.kind = 'websocket';
    this.onUpdate = onUpdate;
    this.pending = new Map();
    // tidings.v2: the message.send commands not answered yet, by id, kept
    // past a timeout: their answers are in tidings.v2 form, and one with a
    // ref stands for an update.
    this.sends = new Map();
    this.nextId = 1;
    this.ended = false;
    this.opened = false;
    this.v2 = false;
    this.closed = new Promise(resolve => { this.resolveClosed = resolve; });
    this.ws = new WebSocket(url, protocols);
    this.open = new Promise((resolve, reject) => {
      this.ws.onopen = () => {
        this.opened = true;
        this.v2 = this.ws.protocol === V2;
        if (!protocols.includes(this.ws.protocol)) {
          this.abort(sdkError(ErrorCode.Network, `the server did not select the subprotocol ${protocols.join(' or ')}`));
        }
        resolve();
      };
      this.ws.onclose = e => {
        const err = e.code === 1000 ? null
          : sdkError(ErrorCode.ConnectionLost, `connection closed (${e.code}${e.reason ? ': ' + e.reason : ''})`, { closeCode: e.code });
        if (!this.opened) {
          const failed = err || sdkError(ErrorCode.Network, 'could not open the WebSocket connection');
          reject(Object.assign(failed, { wsNeverOpened: true }));
        }
        this.end(err);
      };
    });
    this.open.catch(() => {});
    this.ws.onmessage = e => this.receive(e.data);
  }

  receive(data) {
    if (typeof data !== 'string') return;
    // A message holds one or more frames, separated by newlines.
    for (const line of data.split('\n')) {
      if (!line.trim()) continue;
      let f;
      try { f = JSON.parse(line); } catch { continue; }
      if (!f || typeof f !== 'object') continue;
      if (this.v2) {
        if (f.id !== undefined) this.answer(f.id, f.err, f.ok);
        else if (f.e && typeof f.e === 'object') {
          try {
            f = { type: 'update', account: f.a, ref: f.r, silent: f.s, event: eventV1(f.e) };
          } catch { continue; }
          this.onUpdate(this, f);
        }
      } else if (f.type === 'answer') {
        this.answer(f.id, f.error, f.result);
      } else if (f.type === 'update') {
        this.onUpdate(this, f);
      }
    }
  }

  answer(id, error, result) {
    const own = this.sends.get(id);
    this.sends.delete(id);
    if (own && !error && result) {
      // tidings.v2: the answer to message.send is in tidings.v2 form, and
      // with r (the command had a clientId) it stands for the message's
      // update, which the server does not send to this connection: it is
      // made here, in the answer's place among the updates.
      const r = result;
      result = sendResultV1(r);
      if (r.r && !r.dup) {
        const m = sentMessage(own.conversationId, own.m, result);
        const event = { name: 'conversationMessage.sent', time: m.sentAt, conversationId: own.conversationId, payload: m };
        this.onUpdate(this, { type: 'update', account: own.account, ref: r.r, silent: true, event });
      }
    }
    const p = this.pending.get(id);
    if (!p) return;
    this.pending.delete(id);
    if (error) p.reject(sdkError(error.code, error.message, { ref: error.ref }));
    else p.resolve(result);
  }

  /** Sends a command for an account (the default one when not named) and waits for its answer. */
  command(name, data, timeout, account) {
    if (this.ended || this.ws.readyState !== WebSocket.OPEN) {
      return Promise.reject(sdkError(ErrorCode.NotConnected, 'not connected'));
    }
    const id = String(this.nextId++);
    const p = new Promise((resolve, reject) => this.pending.set(id, { resolve, reject }));
    const frame = { type: 'command', id, command: name };
    if (account && account !== DEFAULT_ACCOUNT) frame.account = account;
    if (this.v2 && name === 'message.send' && data) {
      const { conversationId, ...m } = data;
      this.sends.set(id, { account: frame.account, conversationId, m });
    }
    if (data !== undefined) frame.data = data;
    this.ws.send(JSON.stringify(frame));
    return withTimeout(p, timeout, name).finally(() => this.pending.delete(id));
  }

  /** Authenticates an account; resolves with the answer of auth. */
  auth(sess, args, timeout) {
    return this.command('auth', args, timeout, sess.name);
  }

  /** Ends an account on this connection: the server stores its cursor. */
  logout(sess, timeout) {
    return this.command('logout', undefined, timeout, sess.name);
  }

  /** Acknowledges the account's updates up to ref. */
  reply(sess, ref) {
    if (!this.ended && this.ws.readyState === WebSocket.OPEN) {
      const f = { type: 'reply', ref };
      if (sess.name !== DEFAULT_ACCOUNT) f.account = sess.name;
      this.ws.send(JSON.stringify(f));
    }
  }

  /** Ends the connection with an error, without waiting for the network. */
  abort(err) {
    try { this.ws.close(1000); } catch { /* already closing */ }
    this.end(err);
  }

  close() { this.abort(null); }

  end(err) {
    if (this.ended) return;
    this.ended = true;
    for (const p of this.pending.values()) {
      p.reject(sdkError(ErrorCode.ConnectionLost, 'the connection ended before the answer'));
    }
    this.pending.clear();
    this.sends.clear();
    this.resolveClosed(err);
  }
}

/**
 * The polling transport: the server's polls and replies are per token, so
 * each account polls GET /v1/realtime/poll in a loop of its own, with its
 * own token and device; each batch is handed to onBatch, which resolves
 * once the listeners processed it; acknowledgements by POST
 * /v1/realtime/replies. An error that is the account's (its token
 * refused, a resync, too many connections) ends that account's loop
 * (onAccountError); any other (the network, the server) ends the whole
 * connection.
 */
class PollConn {
  constructor(client, onBatch, onAccountError) {
    this.kind = 'polling';
    this.client = client;
    this.onBatch = onBatch;
    this.onAccountError = onAccountError;
    this.loops = new Map(); // sess → {ctl, token}
    this.ended = false;
    this.closed = new Promise(resolve => { this.resolveClosed = resolve; });
  }

  /**
   * Polls once at once for the account (this proves its token and the
   * transport), then keeps polling for it. Resolves with where it stands.
   */
  async auth(sess, after) {
    if (this.ended) throw sdkError(ErrorCode.NotConnected, 'not connected');
    const loop = { ctl: new AbortController(), token: '' };
    this.loops.get(sess)?.ctl.abort();
    this.loops.set(sess, loop);
    let first;
    try {
      first = await this.poll(sess, loop, after, 0);
    } catch (err) {
      if (this.loops.get(sess) === loop) this.loops.delete(sess);
      err.token = loop.token;
      throw err;
    }
    queueMicrotask(() => this.loop(sess, loop, first));
    return { token: loop.token, lastRef: first.lastRef };
  }

  async loop(sess, loop, res) {
    const live = () => !this.ended && this.loops.get(sess) === loop;
    while (live()) {
      try {
        await this.onBatch(this, sess, res.updates || []);
        if (!live()) return;
        // Resume after the last update processed, or where the server stood.
        const after = sess.lastRef && !refAfter(res.lastRef, sess.lastRef) ? sess.lastRef : res.lastRef;
        res = await this.poll(sess, loop, after, this.client.options.pollWait);
      } catch (err) {
        if (!live()) return;
        if ([401, 403, 410, 429].includes(err.status)) {
          this.loops.delete(sess);
          this.onAccountError(this, sess, err, loop.token);
        } else {
          this.end(err);
        }
        return;
      }
    }
  }

  async poll(sess, loop, after, wait) {
    const q = new URLSearchParams({ device: sess.device, wait: String(Math.round(wait / 1000)) });
    if (after) q.set('after', after);
    const resp = await this.client._fetchAs(sess, 'GET', '/v1/realtime/poll?' + q, { signal: loop.ctl.signal, tokenSink: t => { loop.token = t; } });
    return resp.json();
  }

  command(name) {
    if (this.ended) return Promise.reject(sdkError(ErrorCode.NotConnected, 'not connected'));
    const sess = this.loops.keys().next().value;
    if (name === 'ping' && sess) {
      // One quick poll proves that the server answers.
      return this.poll(sess, { ctl: new AbortController(), token: '' }, 'latest', 0).then(() => ({ time: new Date().toISOString() }));
    }
    return Promise.reject(sdkError(ErrorCode.NotConnected, `the command ${name} needs a WebSocket connection; this one polls`));
  }

  /** Stops polling for the account: a poll holds nothing on the server. */
  logout(sess) {
    this.loops.get(sess)?.ctl.abort();
    this.loops.delete(sess);
    return Promise.resolve({});
  }

  reply(sess, ref) {
    this.client._fetchAs(sess, 'POST', '/v1/realtime/replies', { json: { ref, device: sess.device } })
      .catch(() => { /* the next poll resumes after the last processed ref anyway */ });
  }

  abort(err) { this.end(err); }

  close() { this.abort(null); }

  end(err) {
    if (this.ended) return;
    this.ended = true;
    for (const loop of this.loops.values()) loop.ctl.abort();
    this.loops.clear();
    this.resolveClosed(err);
  }
}

/**
 * What a client can do for one user: the REST API with that user's token,
 * and the commands of the WebSocket connection for that user's account.
 * Client (for its default account) and Account (for the others) share it.
 */
class UserAPI {
  // Subclasses give _owner() (the Client) and _session() (the account's
  // session, or a thrown not_logged_in).

  /**
   * The commands of the WebSocket connection, faster than the REST API.
   * They reject with not_connected when there is no WebSocket connection.
   */
  get socket() {
    const cmd = (name, data) => {
      const c = this._owner();
      const sess = this._session();
      const cn = c._conn;
      if (!cn || cn.kind !== 'websocket') return Promise.reject(sdkError(ErrorCode.NotConnected, 'no WebSocket connection'));
      return cn.command(name, data, 30000, sess.name);
    };
    return {
      sendMessage: (conversationId, m) => cmd('message.send', { conversationId, ...m }).then(r => sentMessage(conversationId, m, r)),
      markDelivered: (conversationId, seq = 0) => cmd('message.delivered', { conversationId, seq }),
      markRead: (conversationId, seq = 0) => cmd('message.read', { conversationId, seq }),
      startTyping: conversationId => cmd('typing.start', { conversationId }),
      stopTyping: conversationId => cmd('typing.stop', { conversationId }),
      /** Who is online and typing in the conversation now: {online, typing}, user ids. */
      presence: conversationId => cmd('presence.get', { conversationId }),
      /**
       * Follows the presence of users by id (any users of the app): resolves with
       * {users: [{userId, status, lastSeenAt?}], unknown}. See _presenceCommand.
       */
      subscribePresence: userIds => this._presenceCommand('presence.subscribe', userIds),
      /** Stops following the presence of users; they are forgotten even without a connection. */
      unsubscribePresence: userIds => this._presenceCommand('presence.unsubscribe', userIds),
    };
  }

  // ---- Presence subscriptions ---------------------------------------------
  //
  // The server keeps them only as long as a connection: the client
  // remembers the users of its session and subscribes them again on each
  // WebSocket connection (_resubscribePresence), delivering their status at
  // that time as presence.update events, so that what changed while it was
  // away is known. A command sent while not connected rejects with
  // not_connected, and its users are subscribed at the next connection;
  // one the server refuses (invalid_argument past its limit) forgets them.

  /** The users whose presence the client follows, sorted. */
  presenceSubscriptions() {
    let sess;
    try { sess = this._session(); } catch { return []; }
    return sess.presence ? [...sess.presence.ids].sort() : [];
  }

  async _presenceCommand(name, userIds) {
    const sess = this._session();
    const p = this._presenceOf(sess);
    const subscribe = name === 'presence.subscribe';
    const added = [];
    for (const id of userIds) {
      if (subscribe && !p.ids.has(id)) { p.ids.add(id); added.push(id); }
      if (!subscribe) p.ids.delete(id);
    }
    const cn = p.conn && !p.conn.ended ? p.conn : this._owner()._conn;
    if (!cn || cn.kind !== 'websocket') throw sdkError(ErrorCode.NotConnected, 'no WebSocket connection');
    try {
      const res = await cn.command(name, { userIds }, 30000, sess.name);
      for (const id of res?.unknown || []) p.ids.delete(id);
      return res;
    } catch (err) {
      if (!Object.values(ErrorCode).includes(err.code)) for (const id of added) p.ids.delete(id);
      throw err;
    }
  }

  _presenceOf(sess) { return sess.presence || (sess.presence = { ids: new Set(), conn: null }); }

  /** Subscribes the users the session follows on a new WebSocket connection. */
  async _resubscribePresence(sess, cn) {
    const p = this._presenceOf(sess);
    p.conn = cn;
    if (!p.ids.size) return;
    let res;
    try {
      res = await cn.command('presence.subscribe', { userIds: [...p.ids].sort() }, this.options.dialTimeout, sess.name);
    } catch (err) {
      this._log('warn', 'tidings: could not subscribe to presence again', err);
      return;
    }
    for (const id of res.unknown || []) p.ids.delete(id);
    const time = new Date().toISOString();
    for (const u of res.users || []) {
      const payload = { profileId: u.userId, status: u.status };
      if (u.lastSeenAt) payload.lastSeenAt = u.lastSeenAt;
      this._receive(cn, { type: 'update', account: sess.name, silent: true, action: 'update',
        event: { seq: 0, id: 'presence-' + Math.random().toString(36).slice(2), app: sess.appId, name: 'presence.update', time, payload } });
    }
  }

  // ---- REST API -----------------------------------------------------------

  me() { return this._api('GET', '/v1/me'); }
  getUser(userId) { return this._api('GET', `/v1/users/${enc(userId)}`); }
  updateUser(userId, update) { return this._api('PATCH', `/v1/users/${enc(userId)}`, update); }

  createConversation(conversation) { return this._api('POST', '/v1/conversations', conversation); }
  getConversation(id) { return this._api('GET', `/v1/conversations/${enc(id)}`); }
  /** @param {{limit?: number, cursor?: string, includeDeleted?: boolean}} [filter] */
  listConversations(filter = {}) { return this._api('GET', '/v1/conversations' + query(filter)); }
  updateConversation(id, update) { return this._api('PATCH', `/v1/conversations/${enc(id)}`, update); }
  deleteConversation(id) { return this._api('DELETE', `/v1/conversations/${enc(id)}`); }
  undeleteConversation(id) { return this._api('POST', `/v1/conversations/${enc(id)}/undelete`); }

  async listParticipants(id) { const all = []; let cursor = ''; do { const page = await this._api('GET', `/v1/conversations/${enc(id)}/participants?limit=1000${cursor ? `&cursor=${enc(cursor)}` : ''}`); all.push(...page.participants); cursor = page.nextCursor; } while (cursor); return all; }
  addParticipant(id, participant) { return this._api('POST', `/v1/conversations/${enc(id)}/participants`, participant); }
  updateParticipant(id, userId, role) { return this._api('PATCH', `/v1/conversations/${enc(id)}/participants/${enc(userId)}`, { role }); }
  removeParticipant(id, userId) { return this._api('DELETE', `/v1/conversations/${enc(id)}/participants/${enc(userId)}`); }
  join(id) { return this._api('POST', `/v1/conversations/${enc(id)}/join`); }
  leave(id) { return this._api('POST', `/v1/conversations/${enc(id)}/leave`); }

  /**
   * Sends a message by the REST API. Sending again with the same clientId
   * returns the first message instead of sending a new one: give one to
   * retry safely.
   */
  sendMessage(id, message) { return this._api('POST', `/v1/conversations/${enc(id)}/messages`, message); }
  /** @param {{before?: number, after?: number, limit?: number}} [filter] */
  listMessages(id, filter = {}) { return this._api('GET', `/v1/conversations/${enc(id)}/messages` + query(filter)); }
  getMessage(id, messageId) { return this._api('GET', `/v1/conversations/${enc(id)}/messages/${enc(messageId)}`); }
  editMessage(id, messageId, edit) { return this._api('PATCH', `/v1/conversations/${enc(id)}/messages/${enc(messageId)}`, edit); }
  deleteMessage(id, messageId) { return this._api('DELETE', `/v1/conversations/${enc(id)}/messages/${enc(messageId)}`); }
  markDelivered(id, seq = 0) { return this._api('POST', `/v1/conversations/${enc(id)}/delivered`, { seq }); }
  markRead(id, seq = 0) { return this._api('POST', `/v1/conversations/${enc(id)}/read`, { seq }); }
  /** Turns the typing indicator on or off without a WebSocket (socket.startTyping does it over one). */
  setTyping(id, typing) { return this._api('POST', `/v1/conversations/${enc(id)}/typing`, { typing: !!typing }); }
  /** Who is online and typing in the conversation now, without a WebSocket: {online, typing}. */
  getPresence(id) { return this._api('GET', `/v1/conversations/${enc(id)}/presence`); }

  /** Uploads a Blob or File; returns the file's description, whose id a message part names. */
  async uploadFile(id, blob, name = blob.name || 'file') {
    const resp = await this._owner()._fetchAs(this._session(), 'POST', `/v1/conversations/${enc(id)}/files?name=${enc(name)}`,
      { body: blob, contentType: blob.type || 'application/octet-stream' });
    return resp.json();
  }

  /** Downloads a file; resolves with a Blob. */
  async downloadFile(id, fileId) {
    const resp = await this._owner()._fetchAs(this._session(), 'GET', `/v1/conversations/${enc(id)}/files/${enc(fileId)}`);
    return resp.blob();
  }

  // ---- Push notifications (docs/push.md) -----------------------------------

  /** Registers a push target: {kind: 'webpush', endpoint, keys} or {kind: 'apns' | 'fcm', token}. */
  registerPushTarget(target) { return this._api('POST', '/v1/push/targets', target); }
  /** The user's push targets, oldest first. */
  async listPushTargets() { return (await this._api('GET', '/v1/push/targets')).targets; }
  deletePushTarget(targetId) { return this._api('DELETE', `/v1/push/targets/${enc(targetId)}`); }
  /** {enabled, mutedConversations} */
  getPushSettings() { return this._api('GET', '/v1/push/settings'); }
  setPushEnabled(enabled) { return this._api('PATCH', '/v1/push/settings', { enabled: !!enabled }); }
  /** Mutes (or unmutes) a conversation's pushes for the user. */
  muteConversation(id, muted = true) { return this._api(muted ? 'PUT' : 'DELETE', `/v1/conversations/${enc(id)}/mute`); }
  /** The app's VAPID public key (base64url), which browsers subscribe with. */
  async getVAPIDPublicKey() { return (await this._api('GET', '/v1/push/vapid-public-key')).publicKey; }

  /**
   * Turns on Web Push notifications in this browser: asks the user's
   * permission, registers the service worker at swUrl (the server serves
   * one at /sw.js that shows the notifications), subscribes with the
   * app's VAPID key and registers the subscription as a push target of
   * the user. Call it from a user gesture (a click): browsers ask
   * permission only then. Resolves with the target; rejects when the
   * browser cannot, or the user said no.
   */
  async registerWebPush(swUrl = '/sw.js', { device = '' } = {}) {
    if (typeof navigator === 'undefined' || !('serviceWorker' in navigator) || typeof PushManager === 'undefined') {
      throw new Error('this browser has no Web Push');
    }
    if (await Notification.requestPermission() !== 'granted') throw new Error('notifications are not allowed');
    const reg = await navigator.serviceWorker.register(swUrl);
    await navigator.serviceWorker.ready;
    const key = await this.getVAPIDPublicKey();
    let sub = await reg.pushManager.getSubscription();
    if (sub && b64url(sub.options.applicationServerKey) !== key) { await sub.unsubscribe(); sub = null; } // another app's, or a new key
    if (!sub) sub = await reg.pushManager.subscribe({ userVisibleOnly: true, applicationServerKey: fromB64url(key) });
    const { endpoint, keys } = sub.toJSON();
    return this.registerPushTarget({ kind: 'webpush', device, endpoint, keys: { p256dh: keys.p256dh, auth: keys.auth } });
  }

  async _api(method, path, json) {
    const resp = await this._owner()._fetchAs(this._session(), method, path, json === undefined ? {} : { json });
    return resp.status === 204 ? null : resp.json();
  }
}

/**
 * One account of a client: a user authenticated with their own token (and
 * device) on the client's realtime connection, beside the others. Made by
 * client.addAccount; the client's own user is the account "default".
 * Everything the client does for its user, an account does for its own:
 * the REST API with its token, the socket commands on its account.
 */
export class Account extends UserAPI {
  constructor(client, sess) {
    super();
    this._c = client;
    this._s = sess;
  }

  _owner() { return this._c; }

  _session() {
    this._c._checkOpen();
    if (!this._s.active) throw sdkError(ErrorCode.NotLoggedIn, `the account "${this._s.name}" was logged out`);
    return this._s;
  }

  /** The account's name, as the protocol's "account". */
  get name() { return this._s.name; }
  /** The account's user id ('' until known). */
  get userId() { return this._s.userId; }
  /** The account's device name. */
  get device() { return this._s.device; }
  /** The ref of the last update of this account the listeners processed ('' if none). */
  get lastRef() { return this._s.lastRef; }
  /** Whether the account is authenticated on the open connection now. */
  get connected() { return this._s.active && !!this._s.conn && !this._s.conn.ended; }
  /** Why the account stays off the connection: its token was refused for good (null otherwise). */
  get error() { return this._s.error; }
  /** When the account's token accepted on the realtime connection expires (a Date, or null). */
  get tokenExpiry() { return this._s.expiresAt ? new Date(this._s.expiresAt) : null; }

  /**
   * Registers a listener of this account's updates only; returns a
   * function that removes it. The client's listeners get them too.
   * @param {(ev: import('./tidings.d.ts').TidingsEvent) => void | Promise<void>} fn
   */
  addEventListener(fn) {
    const sess = this._s;
    return this._c._addListener(fn, sess);
  }

  /**
   * Ends this account: what its listeners processed is acknowledged, the
   * server stores its cursor, and the other accounts stay connected. The
   * last account's logout ends the connection (closed 1000 by the server).
   */
  logout() { this._c._logoutAccount(this._s); }
}

/**
 * A connection to a Tidings server for one or more users: the realtime
 * updates, delivered to listeners, and the REST API. The user it is made
 * for (options.token, login) is its account "default", which its own
 * methods act for; client.addAccount adds others on the same connection.
 */
export class Client extends UserAPI {
  /**
   * @param {string} [serverURL] The server's base URL; the page's origin by default.
   * @param {import('./tidings.d.ts').Options} [options]
   */
  constructor(serverURL, options = {}) {
    super();
    const base = new URL(serverURL || globalThis.location.origin);
    if (base.protocol !== 'http:' && base.protocol !== 'https:') {
      throw new TypeError(`tidings: the server URL must be http or https, not ${base.protocol}`);
    }
    this.baseURL = (base.origin + base.pathname).replace(/\/+$/, '');
    this.wsURL = this.baseURL.replace(/^http/, 'ws') + '/v1/realtime';
    this.options = {
      device: 'default',
      mode: 'auto',
      transport: 'auto',
      protocol: V2,
      keepAlive: 25000,
      keepAliveTimeout: 10000,
      dialTimeout: 30000,
      refreshMargin: 60000,
      backgroundTimeout: 30000,
      pollWait: 25000,
      upgradeInterval: 60000,
      maxQueue: 10000,
      ackDelay: ACK_DELAY,
      ackEvery: ACK_EVERY,
      cursorStore: null,
      logger: null,
      ...options,
      backoff: { ...DefaultBackoff, ...(options.backoff || {}) },
    };
    checkName('device', this.options.device);
    if (!['auto', 'manual'].includes(this.options.mode)) throw new TypeError(`tidings: unknown mode "${this.options.mode}"`);
    if (!['auto', 'websocket', 'polling'].includes(this.options.transport)) {
      throw new TypeError(`tidings: unknown transport "${this.options.transport}"`);
    }
    if (![V1, V2].includes(this.options.protocol)) throw new TypeError(`tidings: unknown protocol "${this.options.protocol}"`);
    // tidings.v2 falls back to tidings.v1 on a server that does not speak it.
    this._protocols = this.options.protocol === V2 ? [V2, V1] : [V1];
    /** The device name of this installation. */
    this.device = this.options.device;
    /** 'auto' or 'manual'. */
    this.mode = this.options.mode;

    this._events = [];   // {fn, removed, only}
    this._statuses = [];
    this._queue = [];    // items waiting for the listeners
    this._delivering = false;
    this._idle = [];     // resolvers waiting for the queue to drain

    /** @type {Map<string, any>} the sessions of the accounts, by name */
    this._accounts = new Map();
    /** @type {string} */ this._status = Status.Disconnected;
    this._statusError = null;
    this._statusWaiters = [];
    this._closed = false;
    this._manualWant = false;
    this._background = false;
    this._conn = null;
    this._dial = null;
    this._connected = false; // a connection was open since it was wanted: a new one is a reconnection
    this._failures = 0;
    this._lastErr = null;
    this._timers = { retry: 0, bg: 0, keep: 0, upgrade: 0 };
    this._waiters = [];      // connect() calls waiting for the attempt
    this._wsMisses = 0;      // WebSocket attempts in a row that never opened
    this._usePolling = this.options.transport === 'polling' || typeof WebSocket !== 'function';

    for (const l of [].concat(options.eventListeners || [])) this.addEventListener(l);
    for (const l of [].concat(options.statusListeners || [])) this.addStatusListener(l);

    // Come back at once when the browser says the network is back.
    this._onOnline = () => { if (this._timers.retry) { this._disarm('retry'); this._reconcile(); } };
    globalThis.addEventListener?.('online', this._onOnline);
    // A page going away acknowledges what its listeners processed first.
    this._onHide = () => this._flushAcks();
    this._onVisibility = () => { if (globalThis.document?.visibilityState === 'hidden') this._flushAcks(); };
    globalThis.addEventListener?.('pagehide', this._onHide);
    globalThis.document?.addEventListener?.('visibilitychange', this._onVisibility);

    if (options.token || options.tokenProvider) {
      const provider = options.tokenProvider || (() => Promise.resolve(options.token));
      this._setSession(this._newSession(DEFAULT_ACCOUNT, provider, !options.tokenProvider, options.token, this.device));
    }
    this._reconcile();
  }

  _owner() { return this; }

  // ---- Public state -------------------------------------------------------

  /** The current state of the realtime connection. */
  get status() { return this._status; }

  /** The logged-in user's id ('' when not logged in, or not known yet). */
  get userId() { return this._default()?.userId || ''; }

  /** The ref of the last update the listeners processed ('' if none). */
  get lastRef() { return this._default()?.lastRef || ''; }

  /** 'websocket' or 'polling' while connected, else ''. */
  get transport() { return this._conn ? this._conn.kind : ''; }

  /** The protocol the connection speaks while connected ('tidings.v2' or 'tidings.v1'; polls speak tidings.v1), else ''. */
  get protocol() { return this._conn ? (this._conn.v2 ? V2 : V1) : ''; }

  /** When the token accepted on the realtime connection expires (a Date, or null). */
  get tokenExpiry() { const s = this._default(); return s?.expiresAt ? new Date(s.expiresAt) : null; }

  /** The accounts of the client, the default one (if logged in) first, then in the order they were added. */
  get accounts() {
    const all = [...this._accounts.values()];
    return all.filter(s => s.name === DEFAULT_ACCOUNT).concat(all.filter(s => s.name !== DEFAULT_ACCOUNT)).map(s => s.account);
  }

  // ---- Listeners ----------------------------------------------------------

  /**
   * Registers a listener of updates; returns a function that removes it.
   * Listeners are called one at a time, in the order they were added, and
   * every listener gets every update once, in the order of its account's
   * stream; ev.account names the account the update is for ("default" for
   * the client's own user). An update is acknowledged once every listener
   * has returned and the promises they returned have settled. While no
   * event listener is registered, updates wait.
   * @param {(ev: import('./tidings.d.ts').TidingsEvent) => void | Promise<void>} fn
   */
  addEventListener(fn) { return this._addListener(fn, null); }

  _addListener(fn, only) {
    const l = { fn, removed: false, only };
    this._events.push(l);
    this._pump();
    return () => {
      l.removed = true;
      this._events = this._events.filter(x => x !== l);
    };
  }

  /**
   * Registers a listener of the connection status; returns a function that
   * removes it. It gets {status, error}: error says why, for disconnected
   * and reconnecting.
   * @param {(change: import('./tidings.d.ts').StatusChange) => void} fn
   */
  addStatusListener(fn) {
    const l = { fn, removed: false };
    this._statuses.push(l);
    return () => {
      l.removed = true;
      this._statuses = this._statuses.filter(x => x !== l);
    };
  }

  // ---- Login --------------------------------------------------------------

  /**
   * Logs a user in with a token, or a function returning one (called again
   * when the token nears its expiry or is rejected): checks it with GET
   * /v1/me and returns the user's profile. In auto mode the realtime
   * connection then opens.
   * @param {string | (() => Promise<string>)} tokenOrProvider
   */
  async login(tokenOrProvider) {
    this._checkOpen();
    if (this._default()) throw sdkError(ErrorCode.AlreadyLoggedIn, 'already logged in: log out first');
    const isStatic = typeof tokenOrProvider === 'string';
    const provider = isStatic ? () => Promise.resolve(tokenOrProvider) : tokenOrProvider;
    const sess = this._newSession(DEFAULT_ACCOUNT, provider, isStatic, isStatic ? tokenOrProvider : '', this.device);
    const me = await this._fetchAs(sess, 'GET', '/v1/me').then(r => r.json());
    if (!sess.userId) sess.userId = me.id;
    this._checkOpen();
    if (this._default()) throw sdkError(ErrorCode.AlreadyLoggedIn, 'already logged in: log out first');
    this._setSession(sess);
    this._reconcile();
    return me;
  }

  /**
   * Logs the default account out: what the listeners processed is
   * acknowledged and the credentials are forgotten. The other accounts, if
   * any, stay connected; without any, the realtime connection closes.
   */
  logout() {
    const sess = this._default();
    if (sess) this._logoutAccount(sess);
  }

  /**
   * Adds an account: another user, with their own token (a string, or
   * getToken, a function returning one, called again when it nears its
   * expiry or is rejected) and device (the client's by default), on the
   * same realtime connection as the others. Its updates reach the client's
   * listeners with ev.account set to name. Resolves with the Account once
   * the server took its token: authenticated on the open connection, or,
   * when there is none, checked with GET /v1/me (the account then joins the
   * next connection). Rejects, and adds nothing, on a token refused, a name
   * already taken (already_logged_in), or a bad name (TypeError).
   * @param {string} name
   * @param {{token?: string, getToken?: () => Promise<string>, tokenProvider?: () => Promise<string>, device?: string}} opts
   */
  async addAccount(name, opts = {}) {
    this._checkOpen();
    checkName('account', name);
    const device = opts.device || this.device;
    checkName('device', device);
    const provider = opts.getToken || opts.tokenProvider || (opts.token ? () => Promise.resolve(opts.token) : null);
    if (!provider) throw new TypeError('tidings: addAccount needs a token or getToken');
    if (this._accounts.has(name)) throw sdkError(ErrorCode.AlreadyLoggedIn, `the account "${name}" is already added`);
    const isStatic = !opts.getToken && !opts.tokenProvider;
    const sess = this._newSession(name, provider, isStatic, isStatic ? opts.token : '', device);
    this._setSession(sess);
    let checked = false;
    if (this._conn) {
      // Authenticated on the open connection: the answer says whether the token is good.
      checked = await new Promise((resolve, reject) => {
        sess.firstAuth = { resolve, reject };
        this._syncAccounts();
      }).catch(err => {
        this._dropAccount(sess);
        throw err;
      });
    }
    if (!checked) {
      try {
        const me = await this._fetchAs(sess, 'GET', '/v1/me').then(r => r.json());
        if (!sess.userId) sess.userId = me.id;
      } catch (err) {
        this._dropAccount(sess);
        this._reconcile();
        throw err;
      }
    }
    this._reconcile();
    return sess.account;
  }

  // ---- Manual mode --------------------------------------------------------

  /**
   * Opens the realtime connection (manual mode); resolves once it is open
   * and authenticated. Rejects with already_connected, not_logged_in,
   * auto_mode, or the server's error (a refused token).
   */
  connect() {
    this._checkOpen();
    if (this.mode === 'auto') {
      return Promise.reject(sdkError(ErrorCode.AutoMode, 'the connection is managed by the client in auto mode; use mode: "manual" to manage it yourself'));
    }
    if (!this._accounts.size) return Promise.reject(sdkError(ErrorCode.NotLoggedIn, 'not logged in'));
    if (this._conn) return Promise.reject(sdkError(ErrorCode.AlreadyConnected, 'already connected'));
    const p = new Promise((resolve, reject) => this._waiters.push({ resolve, reject }));
    if (!this._manualWant) {
      this._manualWant = true;
      this._connected = false;
      this._failures = 0;
      this._lastErr = null;
      for (const s of this._accounts.values()) s.error = null;
    }
    this._reconcile();
    return p;
  }

  /** Closes the realtime connection (manual mode). */
  disconnect() {
    this._checkOpen();
    if (this.mode === 'auto') {
      throw sdkError(ErrorCode.AutoMode, 'the connection is managed by the client in auto mode');
    }
    this._manualWant = false;
    this._lastErr = null;
    this._resolveWaiters(sdkError(ErrorCode.NotConnected, 'disconnected'));
    this._reconcile();
  }

  /**
   * Pings the server on the realtime connection and resolves with its
   * answer ({time}). Rejects with not_connected when there is no
   * connection. In manual mode in the background, it also keeps the
   * connection, which is dropped after backgroundTimeout without a ping.
   */
  async ping() {
    this._checkOpen();
    const cn = this._conn;
    if (!cn) throw sdkError(ErrorCode.NotConnected, 'not connected');
    if (this._timers.bg) this._armBackground();
    return cn.command('ping', undefined, this.options.keepAliveTimeout);
  }

  /**
   * Tells the client that the application went to the background: in auto
   * mode the connection closes at once; in manual mode it is kept while
   * the application pings.
   */
  enterBackground() { this._background = true; this._flushAcks(); this._reconcile(); }

  /** Tells the client that the application is in the foreground again. */
  enterForeground() {
    this._background = false;
    for (const s of this._accounts.values()) s.error = null;
    this._reconcile();
  }

  /**
   * Resolves once the connection is open. Rejects at once when the client
   * is not trying to connect: not_logged_in, closed, or not_connected with
   * the reason of the last failure as its cause.
   */
  waitConnected() {
    return new Promise((resolve, reject) => {
      const check = () => {
        switch (true) {
          case this._status === Status.Connected: resolve(); return true;
          case this._status === Status.Closed: reject(sdkError(ErrorCode.Closed, 'closed')); return true;
          case !this._accounts.size: reject(sdkError(ErrorCode.NotLoggedIn, 'not logged in')); return true;
          case this._status === Status.Disconnected:
            reject(sdkError(ErrorCode.NotConnected, 'not connected' + (this._statusError ? ': ' + this._statusError.message : ''), { cause: this._statusError || undefined }));
            return true;
        }
        return false;
      };
      if (!check()) this._statusWaiters.push(check);
    });
  }

  /**
   * Closes the connection, after acknowledging what the listeners
   * processed, and stops every timer. The client cannot be used after.
   */
  close() {
    if (this._closed) return;
    this._flushAcks();
    this._closed = true;
    globalThis.removeEventListener?.('online', this._onOnline);
    globalThis.removeEventListener?.('pagehide', this._onHide);
    globalThis.document?.removeEventListener?.('visibilitychange', this._onVisibility);
    this._resolveWaiters(sdkError(ErrorCode.Closed, 'closed'));
    this._reconcile();
    for (const k of Object.keys(this._timers)) this._disarm(k);
    for (const s of this._accounts.values()) clearSessionTimers(s);
    this._queue = [];
  }

  // ---- Internals: REST ----------------------------------------------------

  _checkOpen() {
    if (this._closed) throw sdkError(ErrorCode.Closed, 'closed');
  }

  /** The default account's session, or undefined. */
  _default() { return this._accounts.get(DEFAULT_ACCOUNT); }

  _session() {
    this._checkOpen();
    const sess = this._default();
    if (!sess) throw sdkError(ErrorCode.NotLoggedIn, 'not logged in');
    return sess;
  }

  /**
   * Makes a request as the user of sess and returns the response, or
   * throws a TidingsError. A 401 gets a new token from the provider and
   * one more try.
   * @param {any} sess
   * @param {string} method
   * @param {string} path
   * @param {{json?: any, body?: any, contentType?: string, signal?: AbortSignal, tokenSink?: (t: string) => void}} [opts]
   */
  async _fetchAs(sess, method, path, { json, body, contentType, signal, tokenSink } = {}) {
    for (let attempt = 0; ; attempt++) {
      const tok = await sess.tokens.get();
      tokenSink?.(tok);
      const headers = { Authorization: 'Bearer ' + tok };
      if (json !== undefined) {
        headers['Content-Type'] = 'application/json';
        body = JSON.stringify(json);
      } else if (contentType) {
        headers['Content-Type'] = contentType;
      }
      let resp;
      try {
        resp = await fetch(this.baseURL + path, { method, headers, body, signal, cache: 'no-store', keepalive: method === 'POST' && path === '/v1/realtime/replies' });
      } catch (e) {
        if (signal?.aborted) throw sdkError(ErrorCode.ConnectionLost, 'aborted', { cause: e });
        throw sdkError(ErrorCode.Network, `${method} ${path.split('?')[0]}: the server could not be reached`, { cause: e });
      }
      if (resp.ok) return resp;
      const err = await errorOf(resp);
      if (resp.status === 401) {
        sess.tokens.reject(tok);
        if (attempt === 0 && !sess.tokens.static) continue;
      }
      throw err;
    }
  }

  // ---- Internals: accounts ------------------------------------------------
  //
  // Each account has a session: its token source, device, user, refs,
  // the connection it is authenticated on (conn), its timers and its
  // pending acknowledgement. The connection is the client's; accounts join
  // it (_authOn) when it opens, when they are added, and after the server
  // ended them (account.closed) or a resync.

  _newSession(name, provider, isStatic, token, device) {
    const sess = {
      name, device, tokens: new TokenSource(provider, isStatic, this.options.refreshMargin),
      userId: '', appId: '', lastRef: '', resumeLatest: false, cursorLoaded: false,
      active: true,        // false once logged out
      conn: null,          // the connection the account is authenticated on
      authing: null,       // the connection an auth is under way on
      expiresAt: 0,
      resyncPending: false,
      error: null,         // why the account stays off: its token was refused for good
      failures: 0,         // auths in a row that failed on an open connection
      timers: { retry: 0, refresh: 0, ack: 0 },
      unacked: 0,          // updates processed since the last reply
      replied: '',         // the last ref replied on the current connection
      saved: '',           // the last ref given to the cursor store
      token: '',           // the token authenticated on the connection
      saving: Promise.resolve(),
      firstAuth: null,     // addAccount waiting for the first answer
      account: null,
    };
    sess.account = new Account(this, sess);
    if (token) {
      const c = jwtClaims(token);
      sess.userId = c.sub || '';
      sess.appId = c.app || '';
    }
    return sess;
  }

  _setSession(sess) {
    this._accounts.set(sess.name, sess);
    this._failures = 0;
    this._lastErr = null;
    this._syncAccounts();
  }

  /** Forgets an account at once, without a word to the server. */
  _dropAccount(sess) {
    sess.active = false;
    if (this._accounts.get(sess.name) === sess) this._accounts.delete(sess.name);
    clearSessionTimers(sess);
    settleFirstAuth(sess, sdkError(ErrorCode.NotLoggedIn, 'logged out'));
  }

  /** Logs an account out: acknowledges, tells the server, keeps the others. */
  _logoutAccount(sess) {
    if (!sess.active) return;
    this._flushAck(sess);
    const cn = sess.conn || sess.authing;
    sess.conn = null;
    this._dropAccount(sess);
    if (cn && !cn.ended) {
      if (this._conn === cn && !this._accounts.size) {
        // The last account: the server answers, then closes with 1000, a
        // clean end rather than a loss to recover from.
        this._conn = null;
        this._disarmConnTimers();
        if (cn.kind === 'polling') cn.close();
        else cn.logout(sess, 5000).catch(() => {}).finally(() => setTimeout(() => cn.close(), 5000));
      } else {
        cn.logout(sess, 10000).catch(() => { /* the connection is going anyway */ });
      }
    }
    if (!this._accounts.size) {
      this._manualWant = false;
      this._lastErr = null;
      this._resolveWaiters(sdkError(ErrorCode.NotLoggedIn, 'logged out'));
    }
    this._reconcile();
  }

  /** The accounts that can join a connection now. */
  _eligible() {
    return [...this._accounts.values()].filter(s => s.active && !s.error && !s.resyncPending);
  }

  /** Authenticates, on the open connection, the accounts not yet on it. */
  _syncAccounts() {
    const cn = this._conn;
    if (!cn || cn.ended) return;
    for (const sess of this._eligible()) {
      if (sess.conn === cn || sess.authing === cn || sess.timers.retry) continue;
      this._authOn(cn, sess).catch(err => this._accountFailed(sess, err));
    }
  }

  /** Authenticates one account on a connection, resuming after its last processed ref. */
  async _authOn(cn, sess) {
    sess.authing = cn;
    let tok = '';
    try {
      tok = await sess.tokens.get();
      if (!sess.userId) { // the cursor store's key needs them
        const c = jwtClaims(tok);
        sess.userId = c.sub || '';
        sess.appId = c.app || '';
      }
      await this._loadCursor(sess);
      if (!sess.active || cn.ended) throw sdkError(ErrorCode.NotConnected, 'not connected');
      const after = sess.resumeLatest ? 'latest' : sess.lastRef;
      if (cn.kind === 'polling') {
        const res = await cn.auth(sess, after);
        tok = res.token || tok;
        sess.expiresAt = sess.tokens.exp || 0;
        if (after === 'latest' && !sess.lastRef) sess.lastRef = res.lastRef || '';
      } else {
        const args = { token: tok, device: sess.device };
        if (after) args.resumeAfter = after;
        const res = await cn.auth(sess, args, this.options.dialTimeout);
        sess.token = tok;
        sess.expiresAt = Date.parse(res.expiresAt) || 0;
        if (!sess.userId) { sess.userId = res.userId; sess.appId = res.app; }
        if (after === 'latest' && !sess.lastRef) sess.lastRef = res.resumedAfter || '';
        await this._resubscribePresence(sess, cn); // before anything else of the account's
      }
      sess.resumeLatest = false;
    } catch (err) {
      if (sess.authing === cn) sess.authing = null;
      throw this._authError(err, sess, err.token || tok);
    }
    if (sess.authing === cn) sess.authing = null;
    if (!sess.active) { // logged out meanwhile
      cn.logout(sess, 10000).catch(() => {});
      return;
    }
    sess.conn = cn;
    sess.failures = 0;
    sess.error = null;
    sess.replied = '';
    this._armAccountRefresh(sess);
    // What was processed but not acknowledged (on the previous connection) is, now.
    if (refAfter(sess.lastRef, sess.replied)) this._flushAck(sess);
    settleFirstAuth(sess, null, true);
  }

  _authError(err, sess, tok) {
    if (err.code === 'unauthenticated') sess.tokens.reject(tok);
    // Also when the server does not know our ref (another server, a
    // restored backup): error.ref is its newest.
    if (err.code === 'resync_required') return new ResyncError(err.ref, err);
    return err;
  }

  /**
   * What an account's failed auth leads to: a resync, the account off for
   * good (its token refused for good), or another try after a backoff.
   */
  _accountFailed(sess, err) {
    if (!sess.active || this._closed) return;
    if (err instanceof ResyncError) {
      settleFirstAuth(sess, null, true);
      this._startResync(sess, err);
      return;
    }
    const connLevel = [ErrorCode.ConnectionLost, ErrorCode.NotConnected, ErrorCode.Network, ErrorCode.Timeout].includes(err.code);
    const fatal = err.code === ErrorCode.TokenRejected || (err.code === 'unauthenticated' && sess.tokens.static);
    if (!connLevel && (fatal || sess.firstAuth)) {
      if (sess.firstAuth) { settleFirstAuth(sess, err); return; } // addAccount rejects and drops it
      this._log('warn', `tidings: the account "${sess.name}" stays off: its token was refused`, err);
      sess.error = err;
      this._lastErr = err;
      if (!this._want()) { // no account left to connect
        if (this.mode === 'manual') this._manualWant = false;
        this._resolveWaiters(err);
      }
      this._reconcile();
      return;
    }
    settleFirstAuth(sess, null, false);
    if (connLevel) return; // the connection's own retry brings the account back
    this._log('warn', `tidings: the account "${sess.name}" could not authenticate`, err);
    sess.timers.retry = setTimeout(() => {
      sess.timers.retry = 0;
      this._syncAccounts();
    }, backoffDelay(this.options.backoff, sess.failures++));
  }

  /** A connection ended: its accounts are off it. */
  _detach(cn) {
    for (const s of this._accounts.values()) {
      if (s.conn === cn) {
        s.conn = null;
        clearTimeout(s.timers.refresh);
        s.timers.refresh = 0;
      }
    }
  }

  // ---- Internals: the connection supervisor ------------------------------
  //
  // Like the Go SDK's machine: the methods change what is wanted, and
  // _reconcile makes the connection, the timers and the status follow.

  _want() {
    if (this._closed || !this._accounts.size) return false;
    if (![...this._accounts.values()].some(s => !s.error)) return false; // every token refused for good
    if (this.mode === 'manual') return this._manualWant;
    return !this._background;
  }

  _reconcile() {
    if (this._want()) {
      if (!this._conn && !this._dial && !this._timers.retry && this._eligible().length) this._startDial();
    } else {
      if (this._dial) {
        this._dial.conn?.close();
        this._dial = null;
      }
      this._disarm('retry');
      if (this._conn) this._dropConn();
      this._connected = false;
      this._failures = 0;
      this._resolveWaiters(sdkError(ErrorCode.NotConnected, 'not connected'));
    }
    if (this.mode === 'manual' && this._background && this._manualWant) {
      if (!this._timers.bg) this._armBackground();
    } else {
      this._disarm('bg');
    }
    let s;
    if (this._closed) s = Status.Closed;
    else if (this._conn) s = Status.Connected;
    else if (this._want() && this._connected) s = Status.Reconnecting;
    else if (this._want()) s = Status.Connecting;
    else s = Status.Disconnected;
    this._setStatus(s, this._lastErr);
  }

  _setStatus(status, error) {
    if (status === this._status) return;
    if (status !== Status.Disconnected && status !== Status.Reconnecting) error = null;
    this._status = status;
    this._statusError = error;
    this._log('debug', 'tidings: status', status, error);
    this._statusWaiters = this._statusWaiters.filter(check => !check());
    const change = { status, error };
    for (const l of this._statuses.slice()) {
      if (!l.removed) {
        try { l.fn(change); } catch (e) { report(e); }
      }
    }
  }

  _resolveWaiters(err) {
    const ws = this._waiters;
    this._waiters = [];
    for (const w of ws) err ? w.reject(err) : w.resolve();
  }

  _arm(name, ms, fn) {
    this._disarm(name);
    this._timers[name] = setTimeout(() => {
      this._timers[name] = 0;
      fn();
      this._reconcile();
    }, Math.max(ms, 0));
  }

  _disarm(name) {
    if (this._timers[name]) clearTimeout(this._timers[name]);
    this._timers[name] = 0;
  }

  _armBackground() {
    this._arm('bg', this.options.backgroundTimeout, () => {
      this._manualWant = false;
      this._lastErr = sdkError(ErrorCode.BackgroundTimeout, 'no ping in the background for too long');
      this._resolveWaiters(this._lastErr);
    });
  }

  _startDial() {
    const attempt = { conn: null };
    this._dial = attempt;
    const polling = this._usePolling;
    for (const s of this._accounts.values()) { // this connection authenticates them all
      clearTimeout(s.timers.retry);
      s.timers.retry = 0;
    }
    withTimeout(this._open(polling, attempt), this.options.dialTimeout, 'connecting')
      .catch(async err => {
        // A WebSocket that never opened, refused or left unanswered until
        // the dial timed out: a proxy dropping upgrades, if plain HTTP works.
        const cn = attempt.conn;
        if (!polling && cn?.kind === 'websocket' && !cn.opened && this._dial === attempt) {
          cn.close();
          err.wsBlocked = await this._reachable();
        }
        throw err;
      })
      .then(cn => this._dialed(attempt, cn, null, polling), err => this._dialed(attempt, null, err, polling));
  }

  /**
   * Opens a connection and authenticates every account on it, each
   * resuming after its own last processed ref. It is open once one account
   * is; the others' failures are theirs (_accountFailed).
   */
  async _open(polling, attempt) {
    const cn = polling
      ? new PollConn(this, (cn, sess, updates) => this._receiveBatch(cn, sess, updates), (cn, sess, err, tok) => this._pollFailed(cn, sess, err, tok))
      : new SocketConn(this.wsURL, (cn, f) => this._receive(cn, f), this._protocols);
    attempt.conn = cn;
    cn.closed.then(() => this._detach(cn));
    if (!polling) await cn.open; // if it never opens, _startDial tells a blocked WebSocket from a server gone
    const accounts = this._eligible();
    const errs = await Promise.all(accounts.map(s => this._authOn(cn, s).then(() => null, err => err)));
    if (errs.some(e => !e)) {
      errs.forEach((err, i) => { if (err) this._accountFailed(accounts[i], err); });
      return cn;
    }
    cn.close();
    // None could: the default account's error tells why, else the first.
    const i = Math.max(accounts.findIndex(s => s.name === DEFAULT_ACCOUNT), 0);
    errs.forEach((err, j) => {
      // Resyncs and tokens refused for good are the accounts'; other errors retry the connection.
      if (err instanceof ResyncError || err.code === ErrorCode.TokenRejected || (err.code === 'unauthenticated' && accounts[j].tokens.static) || accounts[j].firstAuth) {
        this._accountFailed(accounts[j], err);
      }
    });
    throw errs[i] || sdkError(ErrorCode.NotConnected, 'no account to authenticate');
  }

  /** Whether the server answers plain HTTP requests. */
  async _reachable() {
    try {
      const resp = await withTimeout(fetch(this.baseURL + '/healthz', { cache: 'no-store' }), 5000, 'healthz');
      return resp.ok;
    } catch {
      return false;
    }
  }

  _dialed(attempt, cn, err, polling) {
    if (this._dial !== attempt) { // abandoned meanwhile
      (cn || attempt.conn)?.close();
      return;
    }
    this._dial = null;
    if (!err) {
      this._log('info', 'tidings: connected', cn.kind);
      this._conn = cn;
      this._connected = true;
      this._failures = 0;
      this._lastErr = null;
      if (!polling) this._wsMisses = 0;
      cn.closed.then(reason => {
        if (this._conn === cn) {
          this._connLost(reason);
          this._reconcile();
        }
      });
      this._resolveWaiters(null);
      this._armKeepAlive();
      this._armUpgrade(cn);
      this._syncAccounts(); // accounts added while it opened
      this._reconcile();
      return;
    }
    attempt.conn?.close();
    if (this._closed) return;
    if (err instanceof ResyncError) { // the listeners rebuild, then the client connects again
      this._reconcile();
      return;
    }
    this._log('warn', 'tidings: could not connect', err);
    this._lastErr = err;
    // Auto transport: WebSockets that never open while HTTP works (a proxy
    // that drops upgrades), twice in a row, switch this client to polling.
    if (!polling && this.options.transport === 'auto') {
      this._wsMisses = err.wsBlocked ? this._wsMisses + 1 : 0;
      if (this._wsMisses >= 2) {
        this._log('warn', 'tidings: WebSocket unavailable: falling back to polling');
        this._usePolling = true;
        this._wsMisses = 0;
      }
    }
    if (!this._want() || (this.mode === 'manual' && !this._connected)) {
      if (this.mode === 'manual') this._manualWant = false;
      this._resolveWaiters(err);
      this._reconcile();
      return;
    }
    this._arm('retry', backoffDelay(this.options.backoff, this._failures), () => {});
    this._failures++;
    this._reconcile();
  }

  _connLost(reason) {
    this._conn = null;
    this._disarmConnTimers();
    this._lastErr = reason;
    this._log('info', 'tidings: connection lost', reason);
    if (this.mode === 'manual' && this._background) this._manualWant = false;
    if (this._want()) {
      this._arm('retry', backoffDelay(this.options.backoff, this._failures), () => {});
      this._failures++;
    }
  }

  /** A polling account's loop ended on an error of its own: the others go on. */
  _pollFailed(cn, sess, err, tok) {
    if (sess.conn === cn) sess.conn = null;
    if (this._conn !== cn) return;
    this._accountFailed(sess, this._authError(err, sess, tok));
    // No account left on it: the connection is of no use.
    if (![...this._accounts.values()].some(s => s.conn === cn)) {
      this._dropConn();
      this._reconcile();
    }
  }

  _disarmConnTimers() {
    this._disarm('keep');
    this._disarm('upgrade');
  }

  /** Closes the connection, after acknowledging what the listeners processed. */
  _dropConn() {
    const cn = this._conn;
    this._flushAcks();
    this._conn = null;
    this._disarmConnTimers();
    cn.close();
    this._detach(cn);
  }

  /** The listeners rebuild the application's state, then the account resumes. */
  _startResync(sess, err) {
    this._log('warn', `tidings: the server no longer has the updates after the last one processed of the account "${sess.name}": resync`, err.ref);
    sess.resyncPending = true;
    this._push({ kind: 'resync', ev: { name: 'resyncRequired', account: sess.name, ref: err.ref, time: new Date().toISOString() }, sess });
  }

  /**
   * A client that fell back to polling (the auto transport, after WebSockets
   * would not open) tries a WebSocket again now and then: a network that
   * blocked them may let them through later (another Wi-Fi, a proxy gone).
   * A probe that opens moves the client back to a WebSocket, resuming
   * after the last update processed; one that fails changes nothing.
   */
  _armUpgrade(cn) {
    if (cn.kind !== 'polling' || this.options.transport !== 'auto' || typeof WebSocket !== 'function') return;
    this._arm('upgrade', this.options.upgradeInterval, () => {
      let probe;
      try {
        probe = new WebSocket(this.wsURL, this._protocols);
      } catch {
        this._armUpgrade(cn);
        return;
      }
      const done = ok => {
        probe.onopen = probe.onclose = probe.onerror = null;
        try { probe.close(1000); } catch { /* closing anyway */ }
        if (this._conn !== cn) return;
        if (!ok) {
          this._armUpgrade(cn);
          return;
        }
        this._log('info', 'tidings: WebSockets open again: leaving polling');
        this._usePolling = false;
        this._wsMisses = 0;
        this._dropConn();
        this._reconcile();
      };
      // A probe left unanswered fails too, after the time a dial may take.
      const timer = setTimeout(() => done(false), this.options.dialTimeout);
      probe.onopen = () => { clearTimeout(timer); done(this._protocols.includes(probe.protocol)); };
      probe.onclose = probe.onerror = () => { clearTimeout(timer); done(false); };
    });
  }

  _armAccountRefresh(sess) {
    clearTimeout(sess.timers.refresh);
    sess.timers.refresh = 0;
    const cn = sess.conn;
    if (!cn || cn.kind !== 'websocket') return; // polls take the token of the moment
    const at = sess.tokens.refreshAt();
    if (!at) return;
    sess.timers.refresh = setTimeout(() => this._refresh(cn, sess), Math.max(at - Date.now(), 1000));
  }

  /** Gets a new token and authenticates it on the open connection: the server takes it as a refresh. */
  async _refresh(cn, sess) {
    sess.timers.refresh = 0;
    if (sess.conn !== cn) return;
    let err = null;
    try {
      const tok = await sess.tokens.get();
      if (tok !== sess.token) {
        try {
          const res = await cn.auth(sess, { token: tok, device: sess.device }, this.options.dialTimeout);
          sess.token = tok;
          sess.expiresAt = Date.parse(res.expiresAt) || 0;
        } catch (e) {
          if (e.code === 'unauthenticated') sess.tokens.reject(tok);
          throw e;
        }
      }
    } catch (e) {
      err = e;
    }
    if (sess.conn !== cn) return;
    if (!err) {
      this._armAccountRefresh(sess);
      return;
    }
    this._log('warn', `tidings: token refresh failed for the account "${sess.name}"`, err);
    const left = sess.expiresAt - Date.now();
    sess.timers.refresh = setTimeout(() => this._refresh(cn, sess), Math.min(Math.max(left / 4, 1000), 30000));
  }

  _armKeepAlive() {
    if (this.options.keepAlive > 0 && this._conn?.kind === 'websocket') {
      this._arm('keep', this.options.keepAlive, () => this._keepAlive(this._conn));
    }
  }

  /** A ping not answered in time means a dead network: the connection is dropped, and reopened. */
  _keepAlive(cn) {
    if (!cn || this._conn !== cn) return;
    this._armKeepAlive();
    cn.command('ping', undefined, this.options.keepAliveTimeout).catch(err => {
      if (err.code === ErrorCode.Timeout) cn.abort(sdkError(ErrorCode.ConnectionLost, 'keepalive ping not answered in time'));
    });
  }

  // ---- Internals: delivery ------------------------------------------------

  async _loadCursor(sess) {
    const store = this.options.cursorStore;
    if (!store || sess.cursorLoaded) return;
    sess.cursorLoaded = true;
    try {
      const ref = await store.load(cursorKey(sess));
      if (ref && refAfter(ref, sess.lastRef)) sess.lastRef = String(ref);
    } catch (e) {
      this._log('warn', 'tidings: could not load the cursor', e);
    }
  }

  /** An update frame from a connection, for the account it names (polls: the account polling). */
  _receive(cn, frame, polled) {
    const sess = polled || this._accounts.get(frame.account || DEFAULT_ACCOUNT);
    if (!sess || !sess.active) return;
    const ev = fullEvent(frame, sess); // the fields the wire leaves out, filled in
    ev.account = sess.name;
    if (ev.name === 'account.closed' && cn.kind === 'websocket' && sess.conn === cn) {
      // The server ended the account (its token expired): it comes back
      // with a fresh token, if it can get one; the others stay.
      sess.conn = null;
      clearTimeout(sess.timers.refresh);
      sess.timers.refresh = 0;
      setTimeout(() => this._syncAccounts(), 0);
    }
    if (!this._push({ kind: 'event', ev, ref: frame.ref || '', sess }, this.options.maxQueue)) {
      // Drop the connection rather than the update: the next one resumes after the last processed.
      cn.abort(sdkError(ErrorCode.ConnectionLost, 'too many updates waiting for the listeners'));
    }
  }

  /** Queues a batch of an account's polled updates and resolves once the listeners processed them. */
  _receiveBatch(cn, sess, updates) {
    for (const f of updates) this._receive(cn, f, sess);
    return this._drained();
  }

  _push(item, limit = 0) {
    if (this._closed) return false;
    if (limit > 0 && this._queue.length >= limit) return false;
    this._queue.push(item);
    this._pump();
    return true;
  }

  _drained() {
    if (!this._queue.length && !this._delivering) return Promise.resolve();
    return new Promise(resolve => this._idle.push(resolve));
  }

  /** Delivers the queue to the listeners, one update at a time, and notes what they processed. */
  async _pump() {
    if (this._delivering) return;
    this._delivering = true;
    try {
      while (this._queue.length && this._events.length) {
        const it = this._queue.shift();
        const sess = it.sess;
        if (!sess.active) continue; // logged out meanwhile
        if (it.kind === 'event') {
          if (it.ref && !refAfter(it.ref, sess.lastRef)) continue; // a replay overlapping what came before
          await this._callListeners(it.ev, sess);
          if (it.ref && sess.active) this._processed(sess, it.ref);
        } else if (it.kind === 'resync') {
          await this._callListeners(it.ev, sess);
          if (it.ev.ref) sess.lastRef = it.ev.ref;
          else { sess.lastRef = ''; sess.resumeLatest = true; }
          sess.unacked = 0;
          if (it.ev.ref) this._saveCursor(sess, it.ev.ref);
          sess.resyncPending = false;
          this._syncAccounts();
          this._reconcile();
        }
      }
    } finally {
      this._delivering = false;
    }
    if (this._queue.length && this._events.length) {
      this._pump();
    } else if (!this._queue.length) {
      const idle = this._idle;
      this._idle = [];
      idle.forEach(r => r());
    }
  }

  async _callListeners(ev, sess) {
    for (const l of this._events.slice()) {
      if (l.removed || (l.only && l.only !== sess)) continue;
      try {
        await l.fn(ev);
      } catch (e) {
        report(e); // a failing listener must not stop the stream
      }
    }
  }

  /**
   * The listeners processed an update of the account. Replies are
   * cumulative, so they are coalesced: one reply per account at most every
   * ackDelay ms (250), or at once after ackEvery (64) updates, and at once
   * before the connection closes, the account logs out or the page hides.
   */
  _processed(sess, ref) {
    sess.lastRef = ref;
    if (++sess.unacked >= this.options.ackEvery) {
      this._flushAck(sess);
    } else if (!sess.timers.ack) {
      sess.timers.ack = setTimeout(() => { sess.timers.ack = 0; this._flushAck(sess); }, this.options.ackDelay);
    }
  }

  /** Acknowledges now what the listeners processed of the account, if not yet. */
  _flushAck(sess) {
    clearTimeout(sess.timers.ack);
    sess.timers.ack = 0;
    sess.unacked = 0;
    const ref = sess.lastRef;
    if (!ref || !refAfter(ref, sess.replied)) return;
    if (refAfter(ref, sess.saved)) this._saveCursor(sess, ref);
    const cn = sess.conn;
    // Without a connection, the next one resumes after lastRef, and replies then.
    if (!cn || cn.ended) return;
    sess.replied = ref;
    cn.reply(sess, ref);
  }

  _flushAcks() {
    for (const s of this._accounts.values()) this._flushAck(s);
  }

  _saveCursor(sess, ref) {
    const store = this.options.cursorStore;
    if (!store) return;
    sess.saved = ref;
    // One save at a time per account, in order.
    sess.saving = sess.saving.then(() => store.save({ ...cursorKey(sess), ref })).catch(e => {
      this._log('warn', 'tidings: could not save the cursor', e);
    });
  }

  _log(level, ...args) {
    const l = this.options.logger;
    if (l && typeof l[level] === 'function') l[level](...args);
  }
}

/** What a cursor store keeps a cursor under: the server's cursor is per app, user and device. */
function cursorKey(sess) {
  return { appId: sess.appId, userId: sess.userId, device: sess.device, account: sess.name };
}

function checkName(what, name) {
  if (typeof name !== 'string' || !/^[A-Za-z0-9_-]{1,64}$/.test(name)) {
    throw new TypeError(`tidings: ${what} name "${name}" is not valid: use 1 to 64 letters, digits, _ and -`);
  }
}

function clearSessionTimers(sess) {
  for (const k of Object.keys(sess.timers)) {
    clearTimeout(sess.timers[k]);
    sess.timers[k] = 0;
  }
}

/** Settles addAccount's wait for the account's first auth: an error, or whether the token was proved. */
function settleFirstAuth(sess, err, proved = false) {
  const w = sess.firstAuth;
  if (!w) return;
  sess.firstAuth = null;
  if (err) w.reject(err);
  else w.resolve(proved);
}

/**
 * A cursor store in localStorage: the last processed ref survives a reload
 * of the page, which then resumes after it.
 * @param {string} [prefix]
 * @returns {import('./tidings.d.ts').CursorStore}
 */
export function localStorageCursor(prefix = 'tidings.cursor') {
  const key = c => `${prefix}/${c.appId}/${c.userId}/${c.device}`;
  return {
    load: c => globalThis.localStorage.getItem(key(c)),
    save: c => globalThis.localStorage.setItem(key(c), c.ref),
  };
}

function enc(s) { return encodeURIComponent(s); }

/** base64url (no padding) of an ArrayBuffer; '' for null. */
function b64url(buf) {
  if (!buf) return '';
  let bin = '';
  for (const b of new Uint8Array(buf)) bin += String.fromCharCode(b);
  return btoa(bin).replace(/\+/g, '-').replace(/\//g, '_').replace(/=+$/, '');
}

/** The bytes of a base64url string. */
function fromB64url(s) {
  const bin = atob(s.replace(/-/g, '+').replace(/_/g, '/') + '='.repeat((4 - s.length % 4) % 4));
  return Uint8Array.from(bin, c => c.charCodeAt(0));
}

function query(params) {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) if (v !== undefined && v !== null && v !== '') q.set(k, String(v));
  const s = q.toString();
  return s ? '?' + s : '';
}

async function errorOf(resp) {
  let body = null;
  try { body = await resp.json(); } catch { /* not JSON */ }
  const e = body && body.error;
  return sdkError(e?.code || 'internal', e?.message || `HTTP ${resp.status}`, { status: resp.status, ref: e?.ref });
}

function report(e) {
  if (typeof globalThis.reportError === 'function') globalThis.reportError(e);
  else console.error(e);
}
