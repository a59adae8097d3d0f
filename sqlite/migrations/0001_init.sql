-- Tidings schema, version 1. Times are Unix microseconds (BIGINT) so the
-- SQL stays portable to PostgreSQL. Tables keyed by (app_id, …) are
-- WITHOUT ROWID: their rows are stored in key order, so a lookup or a
-- range scan (history pages) reads one B-tree, and an insert writes one.

CREATE TABLE apps (
	id             TEXT PRIMARY KEY,
	name           TEXT NOT NULL,
	server_key     TEXT NOT NULL UNIQUE,
	signing_secret TEXT NOT NULL,
	created_at     BIGINT NOT NULL
);

CREATE TABLE users (
	app_id           TEXT NOT NULL REFERENCES apps (id),
	id               TEXT NOT NULL,
	display_name     TEXT NOT NULL,
	avatar_url       TEXT NOT NULL DEFAULT '',
	identifier_value TEXT,
	identifier_kind  TEXT,
	metadata         TEXT,
	created_at       BIGINT NOT NULL,
	updated_at       BIGINT NOT NULL,
	PRIMARY KEY (app_id, id)
) WITHOUT ROWID;

CREATE TABLE conversations (
	app_id            TEXT NOT NULL REFERENCES apps (id),
	id                TEXT NOT NULL,
	name              TEXT NOT NULL,
	description       TEXT NOT NULL DEFAULT '',
	is_public         BOOLEAN NOT NULL DEFAULT FALSE,
	roles             TEXT NOT NULL,
	last_seq          BIGINT NOT NULL DEFAULT 0,
	participant_count INTEGER NOT NULL DEFAULT 0,
	created_by        TEXT NOT NULL,
	created_at        BIGINT NOT NULL,
	updated_at        BIGINT NOT NULL,
	last_activity_at  BIGINT NOT NULL,
	deleted_at        BIGINT,
	PRIMARY KEY (app_id, id)
) WITHOUT ROWID;

CREATE TABLE participants (
	app_id          TEXT NOT NULL,
	conversation_id TEXT NOT NULL,
	user_id         TEXT NOT NULL,
	role            TEXT NOT NULL,
	delivered_seq   BIGINT NOT NULL DEFAULT 0,
	read_seq        BIGINT NOT NULL DEFAULT 0,
	joined_at       BIGINT NOT NULL,
	PRIMARY KEY (app_id, conversation_id, user_id),
	FOREIGN KEY (app_id, conversation_id) REFERENCES conversations (app_id, id),
	FOREIGN KEY (app_id, user_id) REFERENCES users (app_id, id)
) WITHOUT ROWID;
CREATE INDEX participants_by_user ON participants (app_id, user_id);

CREATE TABLE messages (
	app_id          TEXT NOT NULL,
	conversation_id TEXT NOT NULL,
	seq             BIGINT NOT NULL,
	id              TEXT NOT NULL,
	sender_id       TEXT NOT NULL,
	client_id       TEXT,
	parts           TEXT NOT NULL,
	metadata        TEXT,
	alert           TEXT NOT NULL DEFAULT '',
	sent_at         BIGINT NOT NULL,
	edited_at       BIGINT,
	deleted_at      BIGINT,
	PRIMARY KEY (app_id, conversation_id, seq)
) WITHOUT ROWID;
CREATE UNIQUE INDEX messages_by_id ON messages (app_id, conversation_id, id);
CREATE UNIQUE INDEX messages_by_client_id ON messages (app_id, conversation_id, sender_id, client_id)
	WHERE client_id IS NOT NULL;

CREATE TABLE files (
	app_id          TEXT NOT NULL,
	conversation_id TEXT NOT NULL,
	id              TEXT NOT NULL,
	uploader_id     TEXT NOT NULL,
	name            TEXT NOT NULL,
	type            TEXT NOT NULL,
	size            BIGINT NOT NULL,
	blob_key        TEXT NOT NULL,
	created_at      BIGINT NOT NULL,
	PRIMARY KEY (app_id, conversation_id, id)
) WITHOUT ROWID;

-- The event log: one row per event, whatever the number of receivers.
-- seq orders all events in commit order. (No AUTOINCREMENT, which costs a
-- write per insert: seq is the largest plus one, so pruning old events
-- must always keep the newest.)
CREATE TABLE events (
	seq             INTEGER PRIMARY KEY,
	id              TEXT NOT NULL,
	app_id          TEXT NOT NULL,
	name            TEXT NOT NULL,
	time            BIGINT NOT NULL,
	actor           TEXT,
	conversation_id TEXT,
	user_id         TEXT,
	payload         TEXT NOT NULL
);
CREATE INDEX events_by_conversation ON events (app_id, conversation_id, seq);
CREATE INDEX events_by_user ON events (app_id, user_id, seq) WHERE user_id IS NOT NULL;

-- Who took part in which conversation over which part of the event log:
-- a user sees a conversation's events from from_seq to to_seq (inclusive;
-- open while NULL). Leaving and joining again makes a second row.
CREATE TABLE memberships (
	app_id          TEXT NOT NULL,
	conversation_id TEXT NOT NULL,
	user_id         TEXT NOT NULL,
	from_seq        BIGINT NOT NULL,
	to_seq          BIGINT,
	PRIMARY KEY (app_id, user_id, conversation_id, from_seq)
) WITHOUT ROWID;

-- Where each device of a user stands in its stream of updates: the last
-- ref it acknowledged.
CREATE TABLE cursors (
	app_id     TEXT NOT NULL,
	user_id    TEXT NOT NULL,
	device     TEXT NOT NULL,
	seq        BIGINT NOT NULL,
	updated_at BIGINT NOT NULL,
	PRIMARY KEY (app_id, user_id, device)
) WITHOUT ROWID;

-- Small facts about the database: pruned_seq, the newest event removed by
-- retention (a cursor before it cannot be resumed).
CREATE TABLE meta (
	key   TEXT PRIMARY KEY,
	value BIGINT NOT NULL
);
