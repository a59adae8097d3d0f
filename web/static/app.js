// The Tidings web chat: one page on the browser SDK, without a framework.
//
// State lives in plain objects (state below); the SDK's event listener
// applies each update to it and redraws what changed. Messages typed
// while offline wait in an outbox kept in localStorage, and are sent with
// their client id once the server answers again, so that nothing typed is
// lost and nothing is sent twice.
import { Client, Status } from './sdk/tidings.js';

const $ = id => document.getElementById(id);
const store = {
  get: (k, d = null) => { try { return JSON.parse(localStorage.getItem('tidings.' + k)) ?? d; } catch { return d; } },
  set: (k, v) => localStorage.setItem('tidings.' + k, JSON.stringify(v)),
  del: k => localStorage.removeItem('tidings.' + k),
};

/** h builds an element: h('p', {class: 'x', onclick: f}, 'text', child…). Text is never parsed as HTML. */
function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith('on')) el.addEventListener(k.slice(2), v);
    else if (k === 'dataset') Object.assign(el.dataset, v);
    else el.setAttribute(k, v === true ? '' : v);
  }
  for (const c of children.flat()) if (c !== null && c !== undefined && c !== false) el.append(c);
  return el;
}

const state = {
  client: null,
  me: null,              // the signed-in user
  convs: new Map(),      // id → conversation (as the API returns it, kept up to date)
  current: '',           // the open conversation's id
  threads: new Map(),    // id → {messages: Map id→message, hasMore, loading, participants: Map, notices: [{seq, text}]}
  presence: new Map(),   // user id → 'online' | 'offline'
  typing: new Map(),     // conversation id → Map user id → {name, timer}
  outbox: [],            // messages not sent yet: {clientId, conversationId, text, createdAt, error?}
  ready: null,           // resolves once the first state is loaded
  status: Status.Connecting,
};

// ---- Signing in -------------------------------------------------------------

/** A stable device name for this browser, so the server keeps its cursor. */
function deviceId() {
  let id = store.get('device');
  if (!id) {
    id = 'web-' + crypto.randomUUID().slice(0, 13);
    store.set('device', id);
  }
  return id;
}

async function devToken(userId) {
  const resp = await fetch('v1/dev/token', {
    method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify({ userId }),
  });
  const body = await resp.json().catch(() => ({}));
  if (!resp.ok) {
    const err = new Error(body.error?.message || `sign-in failed (${resp.status})`);
    if (resp.status < 500) err.code = 'unauthenticated'; // sign in again
    throw err;
  }
  return body.token;
}

/** Whether the server offers development sign-in to this page (GET /v1/dev answers 200 either way). */
async function devAvailable() {
  try {
    const resp = await fetch('v1/dev', { cache: 'no-store' });
    return resp.ok && (await resp.json()).dev === true;
  } catch {
    return false;
  }
}

async function showSignIn(message = '') {
  $('app').hidden = true;
  $('signin').hidden = false;
  $('signin-error').textContent = message;
  const dev = await devAvailable();
  $('dev-form').hidden = !dev;
  (dev ? $('dev-user') : $('token')).focus();
}

$('dev-form').addEventListener('submit', async e => {
  e.preventDefault();
  const userId = $('dev-user').value.trim();
  try {
    await devToken(userId);
    store.set('session', { dev: userId });
    start();
  } catch (err) {
    $('signin-error').textContent = err.message;
  }
});

$('token-form').addEventListener('submit', e => {
  e.preventDefault();
  store.set('session', { token: $('token').value.trim() });
  start();
});

$('signout').addEventListener('click', () => {
  // This browser's pushes stop: the push service then answers the server
  // 410 Gone, and the server removes the target.
  navigator.serviceWorker?.getRegistration('/sw.js')
    .then(reg => reg?.pushManager.getSubscription()).then(sub => sub?.unsubscribe()).catch(() => {});
  stop();
  store.del('session');
  showSignIn();
});

function stop() {
  state.client?.close();
  state.client = null;
  state.convs.clear();
  state.threads.clear();
  state.current = '';
}

async function start() {
  const session = store.get('session');
  if (!session) return showSignIn();
  stop();
  const opts = {
    device: deviceId(),
    eventListeners: [onEvent],
    statusListeners: [({ status, error }) => {
      state.status = status;
      showStatus();
      if (status === Status.Connected) {
        flushOutbox();
        // Presence changed while away went unseen: ask again.
        if (state.current && state.threads.get(state.current)?.loaded) refreshPresence(state.current);
      }
      // A token that can no longer be renewed (it expired, or the user was deleted): sign in again.
      if (status === Status.Disconnected && (error?.code === 'unauthenticated' || error?.code === 'token_rejected')) {
        stop();
        store.del('session');
        showSignIn('Your session has ended: sign in again.');
      }
    }],
  };
  // A dev session signs in again by name whenever the token nears its expiry.
  if (session.dev) opts.tokenProvider = () => devToken(session.dev);
  else opts.token = session.token;
  const client = new Client(location.origin, opts);
  state.client = client;
  let resolveReady;
  state.ready = new Promise(r => { resolveReady = r; });
  try {
    state.me = await client.me();
  } catch (err) {
    if (err.code === 'unauthenticated' || err.code === 'token_rejected' || err.code === 'forbidden') {
      stop();
      store.del('session');
      return showSignIn('Sign-in failed: ' + err.message);
    }
    // The server cannot be reached: show what we know, and keep trying.
    state.me = { id: session.dev || client.userId, displayName: session.dev || client.userId };
  }
  state.outbox = store.get('outbox.' + state.me.id, []);
  $('me-name').textContent = state.me.displayName;
  $('signin').hidden = true;
  $('app').hidden = false;
  setUpNotifications();
  // A new device starts at the newest update: connect first, then load
  // the state, so that nothing happens unseen in between.
  await Promise.race([client.waitConnected().catch(() => {}), new Promise(r => setTimeout(r, 4000))]);
  await loadAll();
  resolveReady();
  const wanted = new URLSearchParams(location.hash.slice(1)).get('c');
  if (wanted && state.convs.has(wanted)) openConversation(wanted);
  flushOutbox();
}

/** Loads the conversations (and the open one's messages) from the REST API. */
async function loadAll() {
  const client = state.client;
  try {
    const convs = [];
    let cursor = '';
    do {
      const page = await client.listConversations({ limit: 200, cursor });
      convs.push(...page.conversations);
      cursor = page.nextCursor || '';
    } while (cursor);
    state.convs = new Map(convs.map(c => [c.id, c]));
    state.threads.clear();
  } catch (err) {
    console.warn('tidings: could not load the conversations', err);
  }
  renderConvList();
  // The list does not carry the last messages: fetch them for the previews.
  for (const c of state.convs.values()) {
    if (c.lastSeq > 0 && !c.lastMessage) {
      client.listMessages(c.id, { limit: 1 }).then(page => {
        if (!c.lastMessage && page.messages.length) {
          c.lastMessage = page.messages[0];
          renderConvList();
        }
      }, () => {});
    }
  }
  if (state.current) {
    const id = state.current;
    state.current = '';
    if (state.convs.has(id)) openConversation(id);
    else closeConversation();
  }
}

// ---- Connection status ------------------------------------------------------

function showStatus() {
  const el = $('conn');
  let s = state.status;
  if (!navigator.onLine && s !== Status.Connected) s = 'offline';
  const label = { connected: 'Connected', connecting: 'Connecting…', reconnecting: 'Reconnecting…', offline: 'Offline', disconnected: 'Offline', closed: 'Offline' }[s];
  const waiting = state.outbox.filter(m => !m.error).length;
  el.dataset.status = s;
  el.textContent = label + (waiting ? ` · ${waiting} waiting to send` : '');
}
addEventListener('online', () => { showStatus(); flushOutbox(); });
addEventListener('offline', showStatus);

// ---- Updates ------------------------------------------------------------------

/** The SDK's event listener: updates arrive once each, in order; the SDK acknowledges them once this returns. */
async function onEvent(ev) {
  await state.ready;
  const p = ev.payload || {};
  const conv = state.convs.get(ev.conversationId);
  const me = state.me.id;
  switch (ev.name) {
    case 'resyncRequired':
      await loadAll();
      return;
    case 'conversation.create':
    case 'conversation.undelete':
      await fetchConversation(ev.conversationId);
      return;
    case 'conversation.participantAdded':
      if (p.profileId === me && !conv) await fetchConversation(ev.conversationId);
      else if (conv) {
        await refreshParticipants(ev.conversationId);
        addNotice(ev.conversationId, await participantNotice(ev));
      }
      return;
    case 'conversation.participantUpdated':
      if (conv) await refreshParticipants(ev.conversationId);
      return;
    case 'conversation.participantRemoved':
    case 'conversation.delete':
      if (ev.name === 'conversation.delete' || p.profileId === me) {
        state.convs.delete(ev.conversationId);
        state.threads.delete(ev.conversationId);
        if (state.current === ev.conversationId) closeConversation();
        renderConvList();
      } else if (conv) {
        const text = await participantNotice(ev); // before the refresh forgets the name
        await refreshParticipants(ev.conversationId);
        addNotice(ev.conversationId, text);
      }
      return;
    case 'conversation.update':
      if (conv) {
        Object.assign(conv, { name: p.name, description: p.description, isPublic: p.isPublic, roles: p.roles });
        renderConvList();
        if (state.current === conv.id) renderChatHead();
      }
      return;
    case 'conversationMessage.sent':
      onMessage(p, ev);
      return;
    case 'conversationMessage.edited':
    case 'conversationMessage.deleted':
      upsertMessage({ ...p, id: p.referrerId || p.id });
      return;
    case 'conversationMessage.delivered':
    case 'conversationMessage.read':
      onMark(ev.name.endsWith('read') ? 'read' : 'delivered', ev.conversationId, p.profileId, p.seq);
      return;
    case 'conversation.participantTyping':
    case 'conversation.participantTypingOff':
      setTyping(ev.conversationId, p.profileId, ev.actor?.displayName || p.profileId, ev.name.endsWith('Typing'));
      return;
    case 'presence.update':
      state.presence.set(p.profileId, p.status);
      if (state.current) renderChatHead();
      return;
    case 'profile.update':
      if (!p.profile) return;
      if (p.profileId === me) {
        state.me = p.profile;
        $('me-name').textContent = state.me.displayName;
      }
      renamed(p.profile);
      return;
  }
}

/**
 * Shows a user's changed profile (their name, and the avatar made from it)
 * wherever the page shows them: messages, previews, participants, the
 * chat's header and typing line.
 */
function renamed(u) {
  const apply = profile => {
    const p = { ...profile, id: u.id, displayName: u.displayName || u.id, avatarUrl: u.avatarUrl };
    if (!p.avatarUrl) delete p.avatarUrl;
    return p;
  };
  const update = m => {
    if (m?.sender?.id !== u.id) return false;
    m.sender = apply(m.sender);
    return true;
  };
  for (const c of state.convs.values()) update(c.lastMessage);
  for (const [id, t] of state.threads) {
    const part = t.participants.get(u.id);
    if (part) part.profile = apply(part.profile);
    for (const m of t.messages.values()) {
      if (update(m) && id === state.current) placeMessage(m);
    }
    const typing = state.typing.get(id)?.get(u.id);
    if (typing) typing.name = u.displayName || u.id;
  }
  renderConvList();
  if (state.current) {
    renderChatHead();
    renderTyping();
  }
}

async function fetchConversation(id) {
  try {
    state.convs.set(id, await state.client.getConversation(id));
  } catch (err) {
    if (err.code === 'not_found') state.convs.delete(id);
  }
  renderConvList();
}

function onMessage(m, ev) {
  const conv = state.convs.get(m.conversationId);
  const mine = m.sender.id === state.me.id;
  if (mine) dropFromOutbox(m.clientId);
  if (!conv) {
    fetchConversation(m.conversationId);
    return;
  }
  conv.lastSeq = Math.max(conv.lastSeq || 0, m.seq);
  conv.lastActivityAt = m.sentAt;
  conv.lastMessage = m;
  upsertMessage(m);
  // Sending moves the sender's delivered and read marks to their message;
  // no read update comes for it (docs/protocol.md, message.send). A system
  // message has no sender, and moves no mark.
  if (m.sender.id) onMark('read', m.conversationId, m.sender.id, m.seq);
  if (!mine) {
    if (m.sender.id) setTyping(m.conversationId, m.sender.id, '', false);
    if (isReading(conv.id)) markRead(conv.id, m.seq);
    else if (!ev.silent) mark('delivered', conv.id, m.seq);
  }
  renderConvList();
}

/**
 * The line a participantAdded or participantRemoved event shows: "Bob joined",
 * "Bob left", "Alice added Carol", "Alice removed Carol". The payload's reason
 * says which; events stored before servers set it lack it, and the user's own
 * doing is then the one where they are the actor.
 */
async function participantNotice(ev) {
  const p = ev.payload || {};
  if (p.reason === 'deleted') return 'A deleted user left'; // named no more
  const added = ev.name === 'conversation.participantAdded';
  const actor = ev.actor;
  const own = p.reason === 'joined' || p.reason === 'left' || (actor && actor.id === p.profileId);
  const me = state.me.id;
  const who = p.profileId === me ? 'you' : await displayNameOf(ev.conversationId, p.profileId, actor);
  if (own) return `${p.profileId === me ? 'You' : who} ${added ? 'joined' : 'left'}`;
  const by = !actor ? 'The server' : actor.id === me ? 'You' : (actor.displayName || actor.id);
  return `${by} ${added ? 'added' : 'removed'} ${who}`;
}

/**
 * A user's display name: the actor's, a participant's, or else asked of the
 * API (the participants listed may already be past the event being shown).
 */
async function displayNameOf(convId, id, actor) {
  if (actor?.id === id) return actor.displayName || id;
  const known = state.threads.get(convId)?.participants.get(id)?.profile?.displayName;
  if (known) return known;
  try {
    return (await state.client.getUser(id)).displayName || id;
  } catch (err) {
    return id;
  }
}

/** Shows a line of what happened in a conversation after its latest message, if its messages are loaded. */
function addNotice(convId, text) {
  const t = state.threads.get(convId);
  if (!t?.loaded) return;
  const n = { seq: (state.convs.get(convId)?.lastSeq || 0) + 0.5, text };
  t.notices.push(n);
  if (convId === state.current) placeNotice(n);
}

/** Puts a notice in the list after the messages up to its seq (text only: names are the users'). */
function placeNotice(n) {
  const list = $('message-list');
  const el = h('li', { class: 'notice', dataset: { seq: String(n.seq) } });
  el.textContent = n.text;
  const after = [...list.children].find(c => Number(c.dataset.seq) > n.seq);
  list.insertBefore(el, after || null);
}

function onMark(kind, convId, userId, seq) {
  const conv = state.convs.get(convId);
  if (!conv) return;
  if (userId === state.me.id && kind === 'read') {
    conv.readSeq = Math.max(conv.readSeq || 0, seq);
    renderConvList();
  }
  const t = state.threads.get(convId);
  const part = t?.participants.get(userId);
  if (part) {
    part.deliveredSeq = Math.max(part.deliveredSeq, seq);
    if (kind === 'read') part.readSeq = Math.max(part.readSeq, seq);
    if (convId === state.current) updateTicks();
  }
}

// ---- Conversations list ------------------------------------------------------

const unreadOf = c => Math.max(0, (c.lastSeq || 0) - (c.readSeq || 0));

function initials(name) {
  const words = String(name || '?').trim().split(/\s+/);
  return ((words[0]?.[0] || '?') + (words.length > 1 ? words[words.length - 1][0] : '')).toUpperCase();
}

/** A colour per name, from dark ones: white text on each keeps a contrast above 4.5:1. */
const palette = ['#1f5fbf', '#7c3aed', '#b42318', '#0f766e', '#9a3412', '#be185d', '#3f6212', '#0369a1', '#6b21a8', '#a16207'];
function colour(key) {
  let n = 0;
  for (const ch of String(key)) n = (n * 31 + ch.codePointAt(0)) >>> 0;
  return palette[n % palette.length];
}

function avatar(key, name) {
  const el = h('span', { class: 'avatar', 'aria-hidden': 'true' }, initials(name));
  el.style.background = colour(key); // a property, not a style attribute, which the page's CSP forbids
  return el;
}

/** A small inline icon (the page's CSP allows no emoji fonts to be counted on). */
function icon(name) {
  const paths = {
    file: 'M6 2h8l4 4v14a2 2 0 0 1-2 2H6a2 2 0 0 1-2-2V4a2 2 0 0 1 2-2zm7 1.5V7h3.5',
    clock: 'M12 3a9 9 0 1 0 0 18 9 9 0 0 0 0-18zm0 4v5l3 2',
  };
  const svg = document.createElementNS('http://www.w3.org/2000/svg', 'svg');
  svg.setAttribute('viewBox', '0 0 24 24');
  svg.setAttribute('class', 'icon');
  svg.setAttribute('aria-hidden', 'true');
  const path = document.createElementNS('http://www.w3.org/2000/svg', 'path');
  path.setAttribute('d', paths[name]);
  svg.append(path);
  return svg;
}

function preview(m) {
  if (!m) return 'No messages yet';
  if (m.deletedAt) return 'Message deleted';
  const part = m.parts?.[0];
  const text = part?.fileId ? 'File: ' + (part.name || 'file') : part?.data || '';
  if (m.system) return text;
  return (m.sender?.id === state.me.id ? 'You: ' : senderName(m) + ': ') + text;
}

function renderConvList() {
  const list = $('conv-list');
  const focused = document.activeElement?.closest?.('[data-conv]')?.dataset.conv;
  const convs = [...state.convs.values()].sort((a, b) => (b.lastActivityAt || '').localeCompare(a.lastActivityAt || ''));
  list.replaceChildren(...convs.map(c => {
    const unread = unreadOf(c);
    const name = c.name || c.id;
    return h('li', {},
      h('button', {
        type: 'button', dataset: { conv: c.id }, 'aria-current': c.id === state.current ? 'true' : 'false',
        onclick: () => openConversation(c.id),
      },
      avatar(c.id, name),
      h('span', { class: 'conv-name' }, name),
      unread ? h('span', { class: 'unread' }, h('span', { class: 'visually-hidden' }, ', '), String(unread), h('span', { class: 'visually-hidden' }, ' unread')) : '',
      h('span', { class: 'conv-preview' }, preview(c.lastMessage))));
  }));
  $('conv-empty').hidden = convs.length > 0;
  if (focused) list.querySelector(`[data-conv="${CSS.escape(focused)}"]`)?.focus();
  document.title = (convs.reduce((n, c) => n + unreadOf(c), 0) || '') + (convs.some(unreadOf) ? ' · ' : '') + 'Tidings';
}

// ---- One conversation -------------------------------------------------------

function thread(id) {
  let t = state.threads.get(id);
  if (!t) {
    t = { messages: new Map(), hasMore: true, loading: false, loaded: false, participants: new Map(), notices: [] };
    state.threads.set(id, t);
  }
  return t;
}

async function openConversation(id) {
  if (state.current === id) return;
  saveDraft();
  state.current = id;
  history.replaceState(null, '', '#c=' + encodeURIComponent(id));
  $('chat-none').hidden = true;
  $('chat-open').hidden = false;
  $('app').classList.add('chatting');
  $('message-list').replaceChildren();
  $('text').value = store.get('draft.' + id, '');
  autosize();
  renderConvList();
  renderTyping();
  const t = thread(id);
  renderChatHead();
  if (!t.loaded) {
    t.loaded = true;
    t.messages.clear();
    await Promise.all([loadOlder(id, true), refreshParticipants(id)]);
  } else {
    for (const m of sortedMessages(t)) placeMessage(m);
    for (const n of t.notices) placeNotice(n);
    for (const m of state.outbox.filter(m => m.conversationId === id)) placeMessage(pendingMessage(m));
    scrollToBottom();
  }
  if (state.current !== id) return;
  const conv = state.convs.get(id);
  if (conv && unreadOf(conv)) markRead(id, conv.lastSeq);
  if (matchMedia('(max-width: 720px)').matches) $('text').focus();
}

function closeConversation() {
  saveDraft();
  state.current = '';
  history.replaceState(null, '', location.pathname);
  $('chat-none').hidden = false;
  $('chat-open').hidden = true;
  $('app').classList.remove('chatting');
  renderConvList();
}
$('back').addEventListener('click', closeConversation);

function renderChatHead() {
  const conv = state.convs.get(state.current);
  if (!conv) return;
  $('chat-title').textContent = conv.name || conv.id;
  const parts = [...thread(conv.id).participants.values()];
  const members = $('chat-members');
  members.replaceChildren(...parts.flatMap((p, i) => {
    const online = state.presence.get(p.userId);
    const you = p.userId === state.me.id;
    return [
      i ? ', ' : '',
      you ? '' : h('span', { class: 'presence' + (online === 'online' ? ' online' : ''), title: online || 'unknown' }),
      h('span', {}, you ? 'you' : p.profile?.displayName || p.userId),
      !you && online ? h('span', { class: 'visually-hidden' }, ` (${online})`) : '',
    ];
  }));
}

async function refreshParticipants(id) {
  const t = state.threads.get(id);
  if (!t) return; // loaded when the conversation opens
  try {
    const list = await state.client.listParticipants(id);
    t.participants = new Map(list.map(p => [p.userId, p]));
  } catch (err) {
    return;
  }
  await refreshPresence(id);
  if (id === state.current) {
    renderChatHead();
    updateTicks();
  }
}

// Who is online and typing now; presence and typing updates keep it current.
async function refreshPresence(id) {
  const t = state.threads.get(id);
  let now;
  try {
    const c = state.client;
    now = await (c.transport === 'websocket' ? c.socket.presence(id) : c.getPresence(id));
  } catch (err) {
    return;
  }
  for (const userId of t.participants.keys()) {
    state.presence.set(userId, now.online.includes(userId) ? 'online' : 'offline');
  }
  for (const userId of now.typing) {
    if (userId === state.me.id) continue;
    const p = t.participants.get(userId);
    setTyping(id, userId, p?.profile?.displayName || userId, true);
  }
}

const sortedMessages = t => [...t.messages.values()].sort((a, b) => a.seq - b.seq);

/** Loads a page of older messages (the newest page on first opening). */
async function loadOlder(id, first = false) {
  const t = thread(id);
  if (t.loading || (!first && !t.hasMore)) return;
  t.loading = true;
  const status = $('history-status');
  status.textContent = 'Loading…';
  const box = $('messages');
  const oldest = sortedMessages(t)[0];
  try {
    const page = await state.client.listMessages(id, first || !oldest ? { limit: 50 } : { before: oldest.seq, limit: 50 });
    t.hasMore = page.hasMore;
    if (state.current !== id) return;
    const before = box.scrollHeight - box.scrollTop;
    for (const m of page.messages) {
      t.messages.set(m.id, m);
      placeMessage(m);
    }
    if (first) {
      for (const m of state.outbox.filter(m => m.conversationId === id)) placeMessage(pendingMessage(m));
      scrollToBottom();
    } else {
      box.scrollTop = box.scrollHeight - before; // keep what the reader looked at in place
    }
    status.textContent = t.hasMore ? '' : 'This is the start of the conversation.';
  } catch (err) {
    status.textContent = 'Could not load the messages.';
    if (first) t.loaded = false;
  } finally {
    t.loading = false;
  }
}

$('messages').addEventListener('scroll', () => {
  if (state.current && $('messages').scrollTop < 120) loadOlder(state.current);
});

function upsertMessage(m) {
  const t = state.threads.get(m.conversationId);
  if (!t?.loaded) return; // not opened yet: loaded from the API when it is
  const old = t.messages.get(m.id);
  if (old && old.editedAt === m.editedAt && old.deletedAt === m.deletedAt) return; // a replay
  t.messages.set(m.id, m);
  if (m.conversationId === state.current) {
    const box = $('messages');
    const atBottom = box.scrollHeight - box.scrollTop - box.clientHeight < 80;
    placeMessage(m);
    if (!old && (atBottom || m.sender.id === state.me.id)) scrollToBottom();
  }
}

function scrollToBottom() {
  const box = $('messages');
  box.scrollTop = box.scrollHeight;
  pinned = true;
}

// A view at the bottom stays there when what it shows grows or it shrinks:
// an image that loads, an error under a message, a taller message box.
// Only the reader scrolling up unpins it (content that grew under a view
// at the end does not), and scrolling back to the end pins it again.
let pinned = true;
let lastTop = 0;
$('messages').addEventListener('scroll', () => {
  const box = $('messages');
  const nearEnd = box.scrollHeight - box.scrollTop - box.clientHeight < 80;
  if (box.scrollTop < lastTop) pinned = nearEnd;
  else pinned ||= nearEnd;
  lastTop = box.scrollTop;
});
const keepPinned = new ResizeObserver(() => {
  if (pinned && state.current) scrollToBottom();
});
keepPinned.observe($('messages'));
keepPinned.observe($('message-list'));

const pendingMessage = o => ({
  id: '', clientId: o.clientId, conversationId: o.conversationId, seq: Infinity, pending: true, error: o.error,
  sender: { id: state.me.id, displayName: state.me.displayName }, parts: [{ type: 'text/plain', data: o.text }], sentAt: o.createdAt,
});

/** Puts a message's element in the list, in seq order, replacing its previous version (or its pending copy). */
function placeMessage(m) {
  const list = $('message-list');
  const el = messageElement(m);
  const old = (m.id && list.querySelector(`[data-id="${CSS.escape(m.id)}"]`)) ||
    (m.clientId && list.querySelector(`[data-client-id="${CSS.escape(m.clientId)}"]`));
  // Typing in the message's edit box goes on in the new one.
  const typing = old?.contains(document.activeElement) && document.activeElement.matches('.edit-form textarea')
    ? [document.activeElement.selectionStart, document.activeElement.selectionEnd] : null;
  if (old && old.dataset.seq === el.dataset.seq) {
    old.replaceWith(el);
  } else {
    old?.remove();
    const after = [...list.children].find(c => Number(c.dataset.seq) > m.seq);
    list.insertBefore(el, after || null);
  }
  const box = el.querySelector('.edit-form textarea');
  if (box) {
    fitEditBox(box);
    if (typing) {
      box.focus();
      box.setSelectionRange(...typing);
    }
  }
}

const timeFormat = new Intl.DateTimeFormat([], { hour: '2-digit', minute: '2-digit' });

/** The name a message shows for its sender: a deleted user's is gone. */
function senderName(m) {
  return m.sender?.id ? (m.sender.displayName || m.sender.id) : 'Deleted user';
}

/** A system message, from the app itself: centred, without an author. */
function systemMessageElement(m) {
  const when = new Date(m.sentAt);
  return h('li', { class: 'msg system', dataset: { id: m.id || '', clientId: '', seq: String(m.seq) } },
    h('div', { class: 'bubble' },
      h('span', { class: 'visually-hidden' }, 'From the app: '),
      m.deletedAt ? h('p', { class: 'body deleted' }, 'This message was deleted.')
        : h('div', { class: 'body' }, ...m.parts.map(p => partElement(m, p))),
      h('p', { class: 'meta' },
        m.editedAt && !m.deletedAt ? h('span', {}, 'edited') : '',
        isNaN(when) ? '' : h('time', { datetime: m.sentAt }, timeFormat.format(when)))));
}

function messageElement(m) {
  if (m.system) return systemMessageElement(m);
  const mine = m.sender.id === state.me.id;
  const conv = state.convs.get(m.conversationId);
  const edited = mine && !m.deletedAt && editing?.id === m.id;
  const body = m.deletedAt
    ? h('p', { class: 'body deleted' }, 'This message was deleted.')
    : edited ? editForm(m) : h('div', { class: 'body' }, ...m.parts.map(p => partElement(m, p)));
  const when = new Date(m.sentAt);
  return h('li', {
    class: 'msg' + (mine ? ' mine' : '') + (m.pending ? ' pending' : ''),
    dataset: { id: m.id || '', clientId: m.clientId || '', seq: m.pending ? 'Infinity' : String(m.seq) },
  },
  avatar(m.sender.id, m.sender.displayName),
  h('div', { class: 'bubble' + (edited ? ' editing' : '') },
    !mine && ((conv?.participantCount || 0) > 2 || !m.sender.id) ? h('p', { class: 'sender' }, senderName(m)) : h('span', { class: 'visually-hidden' }, (mine ? 'You' : senderName(m)) + ': '),
    body,
    h('p', { class: 'meta' },
      m.editedAt && !m.deletedAt ? h('span', {}, 'edited') : '',
      isNaN(when) ? '' : h('time', { datetime: m.sentAt }, timeFormat.format(when)),
      mine ? ticksElement(m) : '')),
  mine && !m.pending && !m.deletedAt && !edited ? (confirmingDelete === m.id ? deleteConfirmation(m) : h('div', { class: 'actions' },
    m.parts.some(p => p.fileId) ? '' : h('button', { type: 'button', class: 'ghost', onclick: () => startEdit(m) }, 'Edit'),
    h('button', { type: 'button', class: 'ghost', onclick: () => confirmDelete(m) }, 'Delete'))) : '',
  m.pending && m.error ? h('div', { class: 'actions' },
    h('button', { type: 'button', class: 'ghost', onclick: () => { dropFromOutbox(m.clientId); } }, 'Discard')) : '');
}

function partElement(m, p) {
  if (!p.fileId) return p.data || '';
  const label = `${p.name || 'file'}${p.size ? ` (${formatSize(p.size)})` : ''}`;
  if (p.type?.startsWith('image/')) {
    const img = h('img', { alt: p.name || 'image' });
    fileURL(m.conversationId, p.fileId).then(url => { img.src = url; }, () => { img.alt = 'Image unavailable: ' + label; });
    return h('span', { class: 'file' }, img);
  }
  return h('span', { class: 'file' }, h('button', {
    type: 'button', class: 'small',
    onclick: async () => {
      const a = h('a', { href: await fileURL(m.conversationId, p.fileId), download: p.name || 'file' });
      document.body.append(a);
      a.click();
      a.remove();
    },
  }, icon('file'), label));
}

const fileURLs = new Map();
function fileURL(convId, fileId) {
  if (!fileURLs.has(fileId)) {
    const p = state.client.downloadFile(convId, fileId).then(blob => URL.createObjectURL(blob));
    p.catch(() => fileURLs.delete(fileId));
    fileURLs.set(fileId, p);
  }
  return fileURLs.get(fileId);
}

function formatSize(n) {
  if (n < 1024) return n + ' B';
  if (n < 1 << 20) return (n / 1024).toFixed(0) + ' KiB';
  return (n / (1 << 20)).toFixed(1) + ' MiB';
}

/** ✓ sent, ✓✓ delivered to every other participant, blue ✓✓ read by all of them. */
function ticksElement(m) {
  if (m.pending) {
    return m.error
      ? h('span', { class: 'ticks failed', title: m.error }, 'Not sent: ' + m.error)
      : h('span', { class: 'ticks pending-tick', title: 'Waiting to be sent' }, icon('clock'), h('span', { class: 'visually-hidden' }, 'Waiting to be sent'));
  }
  const others = [...(state.threads.get(m.conversationId)?.participants.values() || [])].filter(p => p.userId !== state.me.id);
  let kind = 'sent';
  if (others.length && others.every(p => p.readSeq >= m.seq)) kind = 'read';
  else if (others.length && others.every(p => p.deliveredSeq >= m.seq)) kind = 'delivered';
  const label = { sent: 'Sent', delivered: 'Delivered', read: 'Read' }[kind];
  return h('span', { class: 'ticks ' + kind, dataset: { tick: kind }, 'aria-label': label, title: label }, kind === 'sent' ? '✓' : '✓✓');
}

function updateTicks() {
  const t = state.threads.get(state.current);
  if (!t) return;
  for (const el of $('message-list').querySelectorAll('.msg.mine:not(.pending)')) {
    const m = t.messages.get(el.dataset.id);
    const old = el.querySelector('.ticks');
    if (m && old && !m.deletedAt) old.replaceWith(ticksElement(m));
  }
}

// The message being edited, and the text in its edit box: a redraw of the
// message (an update that comes meanwhile) keeps the box and what it holds.
let editing = null; // {id, text}

function startEdit(m) {
  editing = { id: m.id, text: m.parts.map(p => p.data || '').join('') };
  placeMessage(currentVersion(m));
  const box = $('message-list').querySelector(`[data-id="${CSS.escape(m.id)}"] .edit-form textarea`);
  box?.focus();
  box?.setSelectionRange(box.value.length, box.value.length);
}

function fitEditBox(box) {
  box.style.height = 'auto';
  box.style.height = Math.min(box.scrollHeight + 2, 240) + 'px';
}

/** The edit box of a message: it keeps its lines, as the composer does (Enter saves, Shift+Enter adds a line, Escape cancels). */
function editForm(m) {
  const input = h('textarea', { rows: 1, 'aria-label': 'Edit the message' });
  input.value = editing.text;
  const cancel = () => {
    editing = null;
    placeMessage(currentVersion(m));
  };
  const form = h('form', {
    class: 'edit-form',
    onsubmit: async e => {
      e.preventDefault();
      const text = input.value.trim();
      if (!text) return;
      try {
        const edited = await state.client.editMessage(m.conversationId, m.id, { parts: [{ type: 'text/plain', data: text }] });
        if (editing?.id === m.id) editing = null;
        upsertMessage(edited);
        placeMessage(currentVersion(m));
      } catch (err) {
        showError('Could not edit the message: ' + err.message);
      }
    },
  }, input, h('div', { class: 'edit-buttons' },
    h('button', { type: 'button', class: 'small ghost', onclick: cancel }, 'Cancel'),
    h('button', { type: 'submit', class: 'small primary' }, 'Save')));
  input.addEventListener('input', () => {
    if (editing?.id === m.id) editing.text = input.value;
    fitEditBox(input);
  });
  input.addEventListener('keydown', e => {
    if (e.key === 'Escape') cancel();
    if (e.key === 'Enter' && !e.shiftKey && !e.isComposing) {
      e.preventDefault();
      form.requestSubmit();
    }
  });
  return form;
}

// The message whose deletion waits for a confirmation, asked in the message
// itself (a redraw of the message keeps the question).
let confirmingDelete = '';

const currentVersion = m => state.threads.get(m.conversationId)?.messages.get(m.id) || m;

function confirmDelete(m) {
  const before = confirmingDelete;
  confirmingDelete = m.id;
  if (before && before !== m.id) placeMessage(currentVersion({ ...m, id: before }));
  placeMessage(currentVersion(m));
  $('message-list').querySelector(`[data-id="${CSS.escape(m.id)}"] .confirm button.ghost`)?.focus();
}

function deleteConfirmation(m) {
  const keep = () => {
    confirmingDelete = '';
    placeMessage(currentVersion(m));
  };
  return h('div', { class: 'actions confirm', role: 'group', 'aria-label': 'Delete this message?' },
    h('span', {}, 'Delete for everyone?'),
    h('button', { type: 'button', class: 'small danger', onclick: () => deleteMessage(m) }, 'Delete'),
    h('button', { type: 'button', class: 'small ghost', onclick: keep }, 'Keep'));
}

async function deleteMessage(m) {
  confirmingDelete = '';
  try {
    upsertMessage(await state.client.deleteMessage(m.conversationId, m.id) || { ...m, parts: [], deletedAt: new Date().toISOString() });
  } catch (err) {
    placeMessage(currentVersion(m));
    showError('Could not delete the message: ' + err.message);
  }
}

// ---- Errors: a banner in the page, never a browser dialog ---------------------

let errorTimer = 0;
/** Shows an error in the banner above the messages, until dismissed or for 10 seconds. */
function showError(text) {
  $('error-text').textContent = text;
  $('error-banner').hidden = false;
  clearTimeout(errorTimer);
  errorTimer = setTimeout(hideError, 10000);
}
function hideError() {
  clearTimeout(errorTimer);
  $('error-banner').hidden = true;
  $('error-text').textContent = '';
}
$('error-close').addEventListener('click', hideError);

// ---- Read and delivered marks -------------------------------------------

const isReading = id => id === state.current && document.visibilityState === 'visible';

/** Moves a mark over the socket when there is one (faster), else by the REST API. */
function mark(kind, convId, seq) {
  const c = state.client;
  const viaSocket = c.transport === 'websocket'
    ? (kind === 'read' ? c.socket.markRead(convId, seq) : c.socket.markDelivered(convId, seq))
    : Promise.reject(new Error('no socket'));
  return viaSocket.catch(() => (kind === 'read' ? c.markRead(convId, seq) : c.markDelivered(convId, seq))).catch(() => {});
}

function markRead(convId, seq) {
  const conv = state.convs.get(convId);
  if (!conv || seq <= (conv.readSeq || 0)) return;
  conv.readSeq = seq;
  renderConvList();
  mark('read', convId, seq);
}

document.addEventListener('visibilitychange', () => {
  const conv = state.convs.get(state.current);
  if (conv && isReading(conv.id)) markRead(conv.id, conv.lastSeq);
});

// ---- Typing indicators -------------------------------------------------------

function setTyping(convId, userId, name, on) {
  let m = state.typing.get(convId);
  if (!m) state.typing.set(convId, m = new Map());
  clearTimeout(m.get(userId)?.timer);
  if (on) {
    // Clear it ourselves should the typing-off be lost with a connection.
    m.set(userId, { name, timer: setTimeout(() => setTyping(convId, userId, name, false), 12000) });
  } else {
    m.delete(userId);
  }
  if (convId === state.current) renderTyping();
}

function renderTyping() {
  const names = [...(state.typing.get(state.current)?.values() || [])].map(t => t.name);
  $('typing').textContent = !names.length ? ''
    : names.length === 1 ? `${names[0]} is typing…`
      : `${names.slice(0, -1).join(', ')} and ${names.at(-1)} are typing…`;
}

let lastTypingSent = 0;
function typed() {
  saveDraft();
  autosize();
  const c = state.client;
  if (!state.current || !c?.transport) return;
  const id = state.current;
  // Over the socket when there is one, else through the REST API.
  const typing = on => (c.transport === 'websocket'
    ? (on ? c.socket.startTyping(id) : c.socket.stopTyping(id))
    : c.setTyping(id, on)).catch(() => {});
  if (!$('text').value.trim()) {
    if (lastTypingSent) typing(false);
    lastTypingSent = 0;
  } else if (Date.now() - lastTypingSent > 2000) {
    // Repeated every two seconds while typing: the server ends it after five without one.
    lastTypingSent = Date.now();
    typing(true);
  }
}

// ---- Sending, through the outbox ---------------------------------------------

function saveDraft() {
  if (!state.current) return;
  const text = $('text').value;
  if (text) store.set('draft.' + state.current, text);
  else store.del('draft.' + state.current);
}

function autosize() {
  const t = $('text');
  t.style.height = 'auto';
  t.style.height = Math.min(t.scrollHeight + 2, 144) + 'px';
}

$('text').addEventListener('input', typed);
$('text').addEventListener('keydown', e => {
  if (e.key === 'Enter' && !e.shiftKey && !e.isComposing) {
    e.preventDefault();
    $('composer').requestSubmit();
  }
});

$('composer').addEventListener('submit', e => {
  e.preventDefault();
  const text = $('text').value.trim();
  if (!text || !state.current) return;
  const item = { clientId: crypto.randomUUID(), conversationId: state.current, text, createdAt: new Date().toISOString() };
  state.outbox.push(item);
  saveOutbox();
  $('text').value = '';
  lastTypingSent = 0;
  saveDraft();
  autosize();
  placeMessage(pendingMessage(item));
  scrollToBottom();
  flushOutbox();
});

function saveOutbox() {
  store.set('outbox.' + state.me.id, state.outbox);
  showStatus();
}

function dropFromOutbox(clientId) {
  if (!clientId) return;
  const before = state.outbox.length;
  state.outbox = state.outbox.filter(o => o.clientId !== clientId);
  if (state.outbox.length !== before) {
    saveOutbox();
    $('message-list').querySelector(`.pending[data-client-id="${CSS.escape(clientId)}"]`)?.remove();
  }
}

let flushing = false;
let flushTimer = 0;
/**
 * Sends a message over the socket when there is one (faster, and the
 * server commits the sends of one socket together), else by the REST API.
 */
function send(c, conversationId, m) {
  return c.transport === 'websocket' ? c.socket.sendMessage(conversationId, m) : c.sendMessage(conversationId, m);
}

// The errors after which a send is tried again later: the network, or the
// connection it went out on, failed; not the message.
const retryLater = new Set(['network_error', 'unavailable', 'internal', 'rate_limited', 'token_rejected',
  'not_connected', 'connection_lost', 'timeout']);

/**
 * Sends the outbox in order. The client id makes a resend after a lost
 * answer return the message already sent rather than a second one.
 */
async function flushOutbox() {
  if (flushing || !state.client || !state.me) return;
  flushing = true;
  clearTimeout(flushTimer);
  try {
    for (const item of [...state.outbox]) {
      if (item.error || !state.outbox.includes(item)) continue;
      try {
        const m = await send(state.client, item.conversationId, {
          clientId: item.clientId, parts: [{ type: 'text/plain', data: item.text }],
        });
        dropFromOutbox(item.clientId);
        onMessage(m, { silent: true });
      } catch (err) {
        if (retryLater.has(err.code)) break; // try again later
        item.error = err.message;
        saveOutbox();
        placeMessage(pendingMessage(item));
      }
    }
  } finally {
    flushing = false;
  }
  if (state.outbox.some(o => !o.error)) flushTimer = setTimeout(flushOutbox, 3000);
}

// ---- Files ------------------------------------------------------------------------

$('file').addEventListener('change', async e => {
  const file = e.target.files[0];
  e.target.value = '';
  const id = state.current;
  if (!file || !id) return;
  const status = $('typing');
  status.textContent = `Uploading ${file.name}…`;
  try {
    const f = await state.client.uploadFile(id, file, file.name);
    const m = await send(state.client, id, {
      clientId: crypto.randomUUID(), parts: [{ type: f.type, name: f.name, fileId: f.id, size: f.size }],
    });
    onMessage(m, { silent: true });
    status.textContent = '';
  } catch (err) {
    status.textContent = err.code === 'network_error'
      ? 'You are offline: send the file again once connected.'
      : 'Could not send the file: ' + err.message;
  }
});

// ---- Dialogs: new conversation, add people -------------------------------------------------------

const ids = s => s.split(',').map(x => x.trim()).filter(Boolean);

for (const d of document.querySelectorAll('dialog')) {
  d.querySelector('[data-close]').addEventListener('click', () => d.close());
}

function openDialog(id) {
  const d = $(id);
  d.querySelector('form').reset();
  d.querySelector('.error').textContent = '';
  d.showModal();
}

$('new-conv').addEventListener('click', () => openDialog('new-conv-dialog'));
$('new-conv-form').addEventListener('submit', async e => {
  e.preventDefault();
  const d = $('new-conv-dialog');
  try {
    const conv = await state.client.createConversation({
      name: $('new-conv-name').value.trim(),
      participants: ids($('new-conv-people').value).filter(u => u !== state.me.id).map(userId => ({ userId })),
    });
    state.convs.set(conv.id, conv);
    d.close();
    openConversation(conv.id);
  } catch (err) {
    d.querySelector('.error').textContent = err.message;
  }
});

$('add-people').addEventListener('click', () => openDialog('add-people-dialog'));
$('add-people-form').addEventListener('submit', async e => {
  e.preventDefault();
  const d = $('add-people-dialog');
  const id = state.current;
  try {
    for (const userId of ids($('add-people-ids').value)) await state.client.addParticipant(id, { userId });
    d.close();
    await refreshParticipants(id);
  } catch (err) {
    d.querySelector('.error').textContent = err.message;
  }
});

start();

/**
 * Offers Web Push notifications where the browser has them: the button
 * asks permission and registers this browser (docs/push.md); once granted,
 * each sign-in registers it again, in case the subscription changed.
 */
function setUpNotifications() {
  const button = $('notify');
  const supported = 'serviceWorker' in navigator && 'PushManager' in window && 'Notification' in window;
  button.hidden = !supported || Notification.permission === 'denied';
  if (button.hidden) return;
  const on = () => { button.textContent = 'Notifications on'; button.disabled = true; };
  button.textContent = 'Turn on notifications';
  button.disabled = false;
  const client = state.client;
  if (Notification.permission === 'granted') client.registerWebPush('/sw.js', { device: deviceId() }).then(on, () => {});
  button.onclick = async () => {
    try {
      await client.registerWebPush('/sw.js', { device: deviceId() });
      on();
    } catch (err) {
      showError('Notifications could not be turned on: ' + err.message);
    }
  };
}

// A notification clicked while the page is open: show its conversation.
navigator.serviceWorker?.addEventListener('message', e => {
  if (e.data?.type === 'tidings.notificationclick' && state.convs.has(e.data.conversationId)) openConversation(e.data.conversationId);
});
