-- Tidings schema on PostgreSQL, version 1: everything the SQLite store
-- has after its migrations 0001 to 0006, in PostgreSQL's own types. Times
-- are timestamptz (microseconds, as SQLite's BIGINTs). JSON documents the
-- API hands back as they were given (profile metadata, message parts,
-- event payloads) are json, which keeps their text as written; settings
-- read as values (an app's editable fields, a conversation's roles) are
-- jsonb. Text compares byte by byte (COLLATE "C"), as in SQLite: ids
-- sort and page the same whatever the database's locale.

-- Positions of events (refs): drawn by nextval in the transaction that
-- stores the event, after that transaction has its id (see events.go).
-- CACHE must stay 1: the proof that a position is final (LogTail.Final)
-- needs values handed out in the order nextval is called, which a
-- per-session cache would break.
CREATE SEQUENCE tidings_event_seq AS bigint CACHE 1;

CREATE TABLE apps (
	id             text COLLATE "C" PRIMARY KEY,
	name           text COLLATE "C" NOT NULL,
	-- "sha256:" and the hex SHA-256 of the key: never the key itself.
	server_key     text COLLATE "C" NOT NULL UNIQUE,
	signing_secret text COLLATE "C" NOT NULL,
	-- The profile fields (JSON names) users of the app may change in their
	-- own profile; the others only the app's server may set.
	user_editable_fields jsonb NOT NULL DEFAULT '["displayName", "avatarUrl", "presenceHidden"]',
	created_at     timestamptz NOT NULL
);

CREATE TABLE users (
	app_id           text COLLATE "C" NOT NULL REFERENCES apps (id),
	id               text COLLATE "C" NOT NULL,
	display_name     text COLLATE "C" NOT NULL,
	avatar_url       text COLLATE "C" NOT NULL DEFAULT '',
	identifier_value text COLLATE "C",
	identifier_kind  text COLLATE "C",
	metadata         json,
	-- A user who hides their presence appears offline, never seen, to the
	-- other users of the app.
	presence_hidden  boolean NOT NULL DEFAULT false,
	-- When the user's last realtime connection closed, written by the
	-- realtime node about once a second.
	last_seen_at     timestamptz,
	created_at       timestamptz NOT NULL,
	updated_at       timestamptz NOT NULL,
	PRIMARY KEY (app_id, id)
);
-- An identifier belongs to one user of an app for its kind.
CREATE UNIQUE INDEX users_by_identifier ON users (app_id, identifier_kind, identifier_value)
	WHERE identifier_value IS NOT NULL;

CREATE TABLE conversations (
	app_id            text COLLATE "C" NOT NULL REFERENCES apps (id),
	id                text COLLATE "C" NOT NULL,
	name              text COLLATE "C" NOT NULL,
	description       text COLLATE "C" NOT NULL DEFAULT '',
	is_public         boolean NOT NULL DEFAULT false,
	roles             jsonb NOT NULL,
	last_seq          bigint NOT NULL DEFAULT 0,
	participant_count integer NOT NULL DEFAULT 0,
	created_by        text COLLATE "C" NOT NULL,
	created_at        timestamptz NOT NULL,
	updated_at        timestamptz NOT NULL,
	last_activity_at  timestamptz NOT NULL,
	deleted_at        timestamptz,
	PRIMARY KEY (app_id, id)
);

CREATE TABLE participants (
	app_id          text COLLATE "C" NOT NULL,
	conversation_id text COLLATE "C" NOT NULL,
	user_id         text COLLATE "C" NOT NULL,
	role            text COLLATE "C" NOT NULL,
	delivered_seq   bigint NOT NULL DEFAULT 0,
	read_seq        bigint NOT NULL DEFAULT 0,
	joined_at       timestamptz NOT NULL,
	PRIMARY KEY (app_id, conversation_id, user_id),
	FOREIGN KEY (app_id, conversation_id) REFERENCES conversations (app_id, id),
	FOREIGN KEY (app_id, user_id) REFERENCES users (app_id, id)
);
CREATE INDEX participants_by_user ON participants (app_id, user_id);

CREATE TABLE messages (
	app_id          text COLLATE "C" NOT NULL,
	conversation_id text COLLATE "C" NOT NULL,
	seq             bigint NOT NULL,
	id              text COLLATE "C" NOT NULL,
	sender_id       text COLLATE "C" NOT NULL,
	client_id       text COLLATE "C",
	parts           json NOT NULL,
	metadata        json,
	alert           text COLLATE "C" NOT NULL DEFAULT '',
	sent_at         timestamptz NOT NULL,
	edited_at       timestamptz,
	deleted_at      timestamptz,
	PRIMARY KEY (app_id, conversation_id, seq)
);
-- Message ids are unique in an app and sort by creation time: new entries
-- go at the end of the index (SQLite's 0006).
CREATE UNIQUE INDEX messages_by_id ON messages (app_id, id);
CREATE UNIQUE INDEX messages_by_client_id ON messages (app_id, conversation_id, sender_id, client_id)
	WHERE client_id IS NOT NULL;

CREATE TABLE files (
	app_id          text COLLATE "C" NOT NULL,
	conversation_id text COLLATE "C" NOT NULL,
	id              text COLLATE "C" NOT NULL,
	uploader_id     text COLLATE "C" NOT NULL,
	name            text COLLATE "C" NOT NULL,
	type            text COLLATE "C" NOT NULL,
	size            bigint NOT NULL,
	blob_key        text COLLATE "C" NOT NULL,
	created_at      timestamptz NOT NULL,
	-- A file is attached once a message refers to it. Files never attached
	-- are removed after a grace period (FileService.RemoveUnattached).
	attached        boolean NOT NULL DEFAULT false,
	PRIMARY KEY (app_id, conversation_id, id)
);
-- Uploads are bounded per uploader over a window of time and per app in
-- total: this index answers both sums without reading the files' rows.
CREATE INDEX files_by_uploader ON files (app_id, uploader_id, created_at, size);
CREATE INDEX files_unattached ON files (created_at) WHERE NOT attached;

-- The event log: one row per event, whatever the number of receivers.
-- seq is the event's position, from tidings_event_seq (no default: only
-- the event-insert helper draws positions, after its transaction has an
-- id). Positions increase in the order they are drawn, not in commit
-- order: readers deliver only final positions (LogTail.Final).
CREATE TABLE events (
	seq             bigint PRIMARY KEY,
	id              text COLLATE "C" NOT NULL,
	app_id          text COLLATE "C" NOT NULL,
	name            text COLLATE "C" NOT NULL,
	time            timestamptz NOT NULL,
	actor           json,
	conversation_id text COLLATE "C",
	user_id         text COLLATE "C",
	payload         json NOT NULL
);
CREATE INDEX events_by_conversation ON events (app_id, conversation_id, seq);
CREATE INDEX events_by_user ON events (app_id, user_id, seq) WHERE user_id IS NOT NULL;
-- Retention finds the events older than a time; times follow positions
-- closely, which a BRIN index summarizes in a few pages.
CREATE INDEX events_by_time ON events USING brin (time);

-- Who took part in which conversation over which part of the event log:
-- a user sees a conversation's events from from_seq to to_seq (inclusive;
-- open while NULL). Leaving and joining again makes a second row.
CREATE TABLE memberships (
	app_id          text COLLATE "C" NOT NULL,
	conversation_id text COLLATE "C" NOT NULL,
	user_id         text COLLATE "C" NOT NULL,
	from_seq        bigint NOT NULL,
	to_seq          bigint,
	PRIMARY KEY (app_id, user_id, conversation_id, from_seq)
);

-- Where each device of a user stands in its stream of updates: the last
-- ref it acknowledged.
CREATE TABLE cursors (
	app_id     text COLLATE "C" NOT NULL,
	user_id    text COLLATE "C" NOT NULL,
	device     text COLLATE "C" NOT NULL,
	seq        bigint NOT NULL,
	updated_at timestamptz NOT NULL,
	PRIMARY KEY (app_id, user_id, device)
);

-- Profile changes reach the users who share a conversation with their
-- user at the time: a profile.update event is stored once (in events),
-- and this table says through which conversations it goes, one row per
-- conversation its user took part in then.
CREATE TABLE profile_shares (
	app_id          text COLLATE "C" NOT NULL,
	conversation_id text COLLATE "C" NOT NULL,
	seq             bigint NOT NULL, -- the profile.update event
	user_id         text COLLATE "C" NOT NULL,   -- whose profile
	PRIMARY KEY (app_id, conversation_id, seq)
);
-- Retention removes them with their events, oldest first.
CREATE INDEX profile_shares_by_seq ON profile_shares (seq);

-- Small facts about the database: pruned_seq, the newest event removed by
-- retention (a cursor before it cannot be resumed).
CREATE TABLE meta (
	key   text COLLATE "C" PRIMARY KEY,
	value bigint NOT NULL
);
