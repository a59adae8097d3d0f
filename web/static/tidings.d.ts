// TypeScript declarations of the Tidings browser SDK (tidings.js).
// Served at /sdk/tidings.d.ts next to /sdk/tidings.js.

/** The state of the realtime connection. */
export declare const Status: {
  readonly Disconnected: 'disconnected';
  readonly Connecting: 'connecting';
  readonly Connected: 'connected';
  readonly Reconnecting: 'reconnecting';
  readonly Closed: 'closed';
};
export type Status = (typeof Status)[keyof typeof Status];

/** Codes of the errors made by the SDK itself (server errors carry the API's codes). */
export declare const ErrorCode: {
  readonly NotLoggedIn: 'not_logged_in';
  readonly AlreadyLoggedIn: 'already_logged_in';
  readonly AlreadyConnected: 'already_connected';
  readonly NotConnected: 'not_connected';
  readonly Closed: 'closed';
  readonly AutoMode: 'auto_mode';
  readonly ConnectionLost: 'connection_lost';
  readonly BackgroundTimeout: 'background_timeout';
  readonly TokenRejected: 'token_rejected';
  readonly Network: 'network_error';
  readonly Timeout: 'timeout';
};

/** An error of the server (`code` from the API: not_found, forbidden…) or of the SDK (ErrorCode). */
export declare class TidingsError extends Error {
  readonly code: string;
  /** The HTTP status, for errors of the REST API. */
  readonly status?: number;
  /** With resync_required: the newest ref. */
  readonly ref?: string;
  /** The WebSocket close code, when the server closed the connection. */
  readonly closeCode?: number;
}

/** Spacing of reconnection attempts, in milliseconds. */
export interface Backoff {
  /** Default 500. */
  initial?: number;
  /** Default 30000. */
  max?: number;
  /** Default 2. */
  multiplier?: number;
  /** The random part taken off each wait, from 0 to 1. Default 0.5. */
  jitter?: number;
}
export declare const DefaultBackoff: Readonly<Required<Backoff>>;
/** The wait after `failures` consecutive failures (0 for the first). */
export declare function backoffDelay(b: Backoff, failures: number): number;

/**
 * Where a client keeps the last processed ref of each account, so that a
 * reloaded page resumes after it. The server keeps one cursor per app, user
 * and device; `account` is the client's name for the account.
 */
export interface CursorStore {
  load(c: { appId: string; userId: string; device: string; account: string }): string | null | Promise<string | null>;
  save(c: { appId: string; userId: string; device: string; account: string; ref: string }): void | Promise<void>;
}
export declare function localStorageCursor(prefix?: string): CursorStore;

export interface Options {
  /** A fixed access token: the client is logged in at once (and, in auto mode, connects). */
  token?: string;
  /** A function returning a token, called again when it nears its expiry or is rejected. */
  tokenProvider?: () => Promise<string>;
  /** This installation's name (1 to 64 letters, digits, _ and -). Default "default". */
  device?: string;
  /** Who manages the connection. Default "auto". */
  mode?: 'auto' | 'manual';
  /**
   * "auto" (the default) uses a WebSocket, and long polling when WebSockets
   * cannot connect: when the browser has none, or after two attempts in a
   * row whose WebSocket never opened (refused, or unanswered within
   * dialTimeout) while the server answers HTTP, as behind a proxy that
   * blocks upgrades. It then tries a WebSocket again every upgradeInterval.
   */
  transport?: 'auto' | 'websocket' | 'polling';
  /**
   * The protocol of the WebSocket (docs/protocol.md). "tidings.v2" (the
   * default) asks for the compact one, and takes tidings.v1 from a server
   * that does not speak it; "tidings.v1" asks for tidings.v1 only. Listeners
   * get the same events with either. Polling speaks tidings.v1.
   */
  protocol?: 'tidings.v2' | 'tidings.v1';
  backoff?: Backoff;
  /** How often to ping an open WebSocket (ms; default 25000; 0 disables). */
  keepAlive?: number;
  /** How long to wait for a ping's answer before dropping the connection (ms; default 10000). */
  keepAliveTimeout?: number;
  /** How long one connection attempt may take (ms; default 30000): a WebSocket not open by then counts as blocked. */
  dialTimeout?: number;
  /** How long before its expiry a token is refreshed (ms; default 60000). */
  refreshMargin?: number;
  /** Manual mode: how long a connection is kept in the background without a ping (ms; default 30000). */
  backgroundTimeout?: number;
  /** How long one poll waits for updates (ms; default 25000). */
  pollWait?: number;
  /** After falling back to polling (transport "auto"), how often to try a WebSocket again (ms; default 60000). */
  upgradeInterval?: number;
  /** Updates that may wait for the listeners before the connection is dropped (default 10000). */
  maxQueue?: number;
  /**
   * Replies are cumulative and coalesced per account: at most one every
   * ackDelay ms (default 250) while updates come, or at once after ackEvery
   * updates processed (default 64), and at once before the connection
   * closes, the account logs out or the page hides. They acknowledge only
   * what every listener has processed.
   */
  ackDelay?: number;
  ackEvery?: number;
  cursorStore?: CursorStore | null;
  /** Where the client logs (console works); default nowhere. */
  logger?: { debug?(...a: unknown[]): void; info?(...a: unknown[]): void; warn?(...a: unknown[]): void } | null;
  /** Listeners registered before the client starts, for good (they get every account's updates). */
  eventListeners?: Array<(ev: TidingsEvent) => void | Promise<void>>;
  statusListeners?: Array<(change: StatusChange) => void>;
}

export interface StatusChange {
  status: Status;
  /** Why, for disconnected and reconnecting; null when the application asked. */
  error: Error | null;
}

export interface Profile {
  id: string;
  displayName: string;
  avatarUrl?: string;
  identifier?: { value: string; kind: string };
}

/**
 * An update: the event of docs/protocol.md with the fields of its frame.
 * `name` tells which: "conversationMessage.sent", "presence.update"… or
 * "resyncRequired", made by the SDK when the server no longer has the
 * updates after the last one processed: rebuild the state from the REST
 * API, after which the client resumes after `ref`.
 */
export interface TidingsEvent {
  name: string;
  /** The update's position in the user's stream; "" on live-only updates (typing, presence). */
  ref: string;
  silent: boolean;
  action: 'new' | 'update' | 'delete';
  /** The account the update is for: "default" for the client's own user, else the name given to addAccount. */
  account: string;
  seq: number;
  /** The event's unique id; on conversationMessage.sent, its message's (payload.id). */
  id: string;
  app: string;
  time: string;
  actor?: Profile;
  conversationId?: string;
  userId?: string;
  /** The event's payload (docs/protocol.md): a ParticipantPayload for the conversation.participant… events. */
  payload: any;
}

/** The payload of conversation.participantAdded, participantUpdated and participantRemoved. */
export interface ParticipantPayload {
  conversationId: string;
  profileId: string;
  /** The role given (added) or the new role (updated); absent on participantRemoved. */
  role?: 'owner' | 'admin' | 'member';
  /**
   * Why: on participantAdded "joined" (they joined a public conversation
   * themselves) or "added" (someone added them, or created the conversation
   * with them); on participantRemoved "left" (they left) or "removed" (someone
   * removed them). Absent on participantUpdated, and on events stored by
   * servers older than the field: compare the event's actor with profileId then.
   */
  reason?: 'joined' | 'added' | 'left' | 'removed';
}

export interface Part { type: string; name?: string; data?: string; fileId?: string; size?: number }
export interface Message {
  id: string; conversationId: string; seq: number; sender: Profile; clientId?: string; parts: Part[];
  metadata?: unknown; alert?: string; sentAt: string; editedAt?: string; deletedAt?: string;
  /** A system message, sent by the app's server itself: `sender.id` is empty. (An empty `sender.id` without it: a deleted user's message.) */
  system?: boolean;
}
export interface NewMessage { parts: Part[]; clientId?: string; metadata?: unknown; alert?: string }
export interface MessagePage { messages: Message[]; hasMore: boolean }
export interface MessageStatus { conversationId: string; userId: string; deliveredSeq: number; readSeq: number; unreadCount: number }
export interface Conversation {
  id: string; name: string; description?: string; isPublic: boolean; roles: unknown; lastSeq: number;
  participantCount: number; createdBy: string; lastActivityAt: string; createdAt: string; updatedAt: string;
  deletedAt?: string; role?: string; readSeq: number; unreadCount: number;
}
export interface Participant { userId: string; profile: Profile; role: string; deliveredSeq: number; readSeq: number; joinedAt: string }
export interface User extends Profile {
  metadata?: unknown; createdAt: string; updatedAt: string;
  /** The presence privacy switch: when on, other users see the user offline and never seen. */
  presenceHidden: boolean;
  /** When the user's last connection closed; absent if never, or hidden from the caller. */
  lastSeenAt?: string;
}
export interface FileInfo { id: string; conversationId: string; uploaderId: string; name: string; type: string; size: number; createdAt: string }

/** The commands of the WebSocket connection; they reject with not_connected without one. */
export interface Socket {
  sendMessage(conversationId: string, m: NewMessage): Promise<Message>;
  markDelivered(conversationId: string, seq?: number): Promise<MessageStatus>;
  markRead(conversationId: string, seq?: number): Promise<MessageStatus>;
  startTyping(conversationId: string): Promise<{}>;
  stopTyping(conversationId: string): Promise<{}>;
  /** Who, among the conversation's participants, is online and who is typing now (user ids, sorted). */
  presence(conversationId: string): Promise<{ online: string[]; typing: string[] }>;
  /**
   * Follows the presence of users by id, any users of the app (at most 1000 by
   * default): a presence.update event comes when one comes online or goes
   * offline. Resolves with their status now, and the ids that are no user of
   * the app. The client subscribes them again on every connection and then
   * delivers each one's status as a presence.update event. Without a
   * connection it rejects with not_connected, and they are subscribed at the
   * next one; refused by the server (invalid_argument), they are forgotten.
   * WebSocket only: while the client polls, they wait for a WebSocket connection.
   */
  subscribePresence(userIds: string[]): Promise<{ users: UserPresence[]; unknown: string[] }>;
  /** Stops following the presence of users. Without a connection it rejects with not_connected, but they are forgotten all the same. */
  unsubscribePresence(userIds: string[]): Promise<{}>;
}

/** A user's presence as others may see it: a user who hides it is offline, never seen. */
export interface UserPresence {
  userId: string;
  status: 'online' | 'offline';
  /** When their last connection closed (for a user online now, the time before); absent if never seen. */
  lastSeenAt?: string;
}

/** What a client can do for one user: the REST API with their token, the socket commands on their account. */
export interface UserAPI {
  readonly socket: Socket;
  /** The users whose presence the client follows (socket.subscribePresence), sorted. */
  presenceSubscriptions(): string[];

  me(): Promise<User>;
  getUser(userId: string): Promise<User>;
  /** Changes the user's own profile: only the fields their app lets users edit (by default displayName, avatarUrl and presenceHidden); another is a 403 naming it. */
  updateUser(userId: string, update: Partial<Pick<User, 'displayName' | 'avatarUrl' | 'identifier' | 'metadata' | 'presenceHidden'>>): Promise<User>;
  createConversation(c: { id?: string; name?: string; description?: string; isPublic?: boolean; roles?: unknown; participants?: Array<{ userId: string; role?: string }> }): Promise<Conversation>;
  getConversation(id: string): Promise<Conversation>;
  listConversations(filter?: { limit?: number; cursor?: string; includeDeleted?: boolean }): Promise<{ conversations: Conversation[]; nextCursor?: string }>;
  updateConversation(id: string, update: { name?: string; description?: string; isPublic?: boolean; roles?: unknown }): Promise<Conversation>;
  deleteConversation(id: string): Promise<null>;
  undeleteConversation(id: string): Promise<Conversation>;
  /** All the participants, in the order they joined (follows the pages of the API). */
  listParticipants(id: string): Promise<Participant[]>;
  addParticipant(id: string, p: { userId: string; role?: string }): Promise<Participant>;
  updateParticipant(id: string, userId: string, role: string): Promise<Participant>;
  removeParticipant(id: string, userId: string): Promise<null>;
  join(id: string): Promise<Participant>;
  leave(id: string): Promise<null>;
  sendMessage(id: string, m: NewMessage): Promise<Message>;
  listMessages(id: string, filter?: { before?: number; after?: number; limit?: number }): Promise<MessagePage>;
  getMessage(id: string, messageId: string): Promise<Message>;
  editMessage(id: string, messageId: string, edit: { parts: Part[]; metadata?: unknown }): Promise<Message>;
  deleteMessage(id: string, messageId: string): Promise<null>;
  markDelivered(id: string, seq?: number): Promise<MessageStatus>;
  markRead(id: string, seq?: number): Promise<MessageStatus>;
  /** Turns the typing indicator on or off through the REST API (for polling clients). */
  setTyping(id: string, typing: boolean): Promise<null>;
  /** Who is online and typing now, through the REST API (for polling clients). */
  getPresence(id: string): Promise<{ online: string[]; typing: string[] }>;
  uploadFile(id: string, blob: Blob, name?: string): Promise<FileInfo>;
  downloadFile(id: string, fileId: string): Promise<Blob>;

  // Push notifications (docs/push.md).
  registerPushTarget(target: NewPushTarget): Promise<PushTarget>;
  listPushTargets(): Promise<PushTarget[]>;
  deletePushTarget(targetId: string): Promise<null>;
  getPushSettings(): Promise<PushSettings>;
  setPushEnabled(enabled: boolean): Promise<PushSettings>;
  muteConversation(id: string, muted?: boolean): Promise<null>;
  getVAPIDPublicKey(): Promise<string>;
  /** Asks permission, registers the service worker at swUrl (default /sw.js), subscribes and registers the subscription. */
  registerWebPush(swUrl?: string, options?: { device?: string }): Promise<PushTarget>;
}

/** How addAccount gets the account's token, and the account's device. */
export interface AccountOptions {
  /** A fixed access token. */
  token?: string;
  /** A function returning a token, called again when it nears its expiry or is rejected. */
  getToken?: () => Promise<string>;
  /** The same as getToken (the name of Options). */
  tokenProvider?: () => Promise<string>;
  /** The account's device (1 to 64 letters, digits, _ and -). Default: the client's. */
  device?: string;
}

/**
 * One account of a client: a user authenticated with their own token on the
 * client's realtime connection, beside the others. Its methods act for its
 * user; they throw not_logged_in once it is logged out.
 */
export declare class Account {
  private constructor();
  /** The name given to addAccount ("default" for the client's own user). */
  readonly name: string;
  readonly userId: string;
  readonly device: string;
  /** The ref of the last update of this account the listeners processed ("" if none). */
  readonly lastRef: string;
  /** Whether the account is authenticated on the open connection now. */
  readonly connected: boolean;
  /** Why the account stays off the connection: its token was refused for good (else null). */
  readonly error: Error | null;
  readonly tokenExpiry: Date | null;
  /** A listener of this account's updates only (the client's listeners get them too). */
  addEventListener(fn: (ev: TidingsEvent) => void | Promise<void>): () => void;
  /**
   * Acknowledges what the listeners processed, ends the account on the server
   * (which stores its cursor) and forgets it; the other accounts stay
   * connected. The last account's logout ends the connection cleanly.
   */
  logout(): void;
}

// An account does for its user all that UserAPI says.
export interface Account extends UserAPI {}

/**
 * A connection to a Tidings server for one or more users. The user it is
 * made for (options.token, login) is the account "default", which its own
 * methods act for; addAccount adds others on the same connection.
 */
export declare class Client {
  /** @param serverURL The server's base URL; the page's origin by default. */
  constructor(serverURL?: string, options?: Options);
  readonly device: string;
  readonly mode: 'auto' | 'manual';
  readonly status: Status;
  readonly userId: string;
  /** The ref of the last update the listeners processed ("" if none). */
  readonly lastRef: string;
  /** "websocket" or "polling" while connected, else "". */
  readonly transport: '' | 'websocket' | 'polling';
  /** The protocol the connection speaks while connected (polls speak tidings.v1), else ''. */
  readonly protocol: '' | 'tidings.v2' | 'tidings.v1';
  readonly tokenExpiry: Date | null;

  /** The accounts, the default one (if logged in) first, then in the order they were added. */
  readonly accounts: Account[];
  /**
   * Adds an account: another user, with their own token and device, on the
   * same connection. Resolves once the server took the token (authenticated
   * on the open connection, or checked with GET /v1/me when there is none);
   * rejects, adding nothing, on a refused token or a name already taken
   * (already_logged_in), and throws a TypeError on a bad name.
   */
  addAccount(name: string, opts: AccountOptions): Promise<Account>;

  /**
   * Every listener gets every update once, in the order of its account's
   * stream, with ev.account naming the account; updates are acknowledged
   * once all returned (and their promises settled).
   */
  addEventListener(fn: (ev: TidingsEvent) => void | Promise<void>): () => void;
  addStatusListener(fn: (change: StatusChange) => void): () => void;

  login(tokenOrProvider: string | (() => Promise<string>)): Promise<User>;
  /** Logs the default account out; the other accounts stay connected (without any, the connection closes). */
  logout(): void;
  /** Manual mode. Rejects with already_connected, not_logged_in, auto_mode, or the server's error. */
  connect(): Promise<void>;
  /** Manual mode; throws auto_mode in auto mode. */
  disconnect(): void;
  /** Rejects with not_connected when there is no connection. */
  ping(): Promise<{ time: string }>;
  enterBackground(): void;
  enterForeground(): void;
  waitConnected(): Promise<void>;
  close(): void;
}

// The client does for its default account's user all that UserAPI says.
export interface Client extends UserAPI {}

export interface NewPushTarget {
  kind: 'webpush' | 'apns' | 'fcm';
  device?: string;
  /** webpush: the subscription's endpoint and keys. */
  endpoint?: string;
  keys?: { p256dh: string; auth: string };
  /** apns, fcm: the device token. */
  token?: string;
}

export interface PushTarget extends NewPushTarget {
  id: string;
  userId: string;
  createdAt: string;
}

export interface PushSettings {
  enabled: boolean;
  mutedConversations: string[];
}

/** What a Web Push carries (the data of the notifications /sw.js shows). */
export interface PushPayload {
  title: string;
  body: string;
  badge: number;
  count: number;
  appId: string;
  conversationId: string;
  messageId: string;
  seq: number;
  senderId: string;
}
