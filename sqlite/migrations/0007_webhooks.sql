-- Webhook endpoints (issue #12). The event log is their outbox: an
-- endpoint's last_seq is its position in it, so an event costs no write
-- of its own for webhooks. version changes with every change made through
-- the API, so that the dispatcher's progress never overwrites a replay.
CREATE TABLE webhook_endpoints (
	app_id        TEXT NOT NULL REFERENCES apps (id),
	id            TEXT NOT NULL,
	url           TEXT NOT NULL,
	secret        TEXT NOT NULL,
	events        TEXT NOT NULL,
	disabled      BOOLEAN NOT NULL DEFAULT FALSE,
	failing       BOOLEAN NOT NULL DEFAULT FALSE,
	failing_since BIGINT,
	last_seq      BIGINT NOT NULL,
	missed_up_to  BIGINT NOT NULL DEFAULT 0,
	missed_at     BIGINT,
	version       BIGINT NOT NULL DEFAULT 1,
	created_at    BIGINT NOT NULL,
	updated_at    BIGINT NOT NULL,
	PRIMARY KEY (app_id, id)
) WITHOUT ROWID;
CREATE UNIQUE INDEX webhook_endpoints_by_id ON webhook_endpoints (id);

-- The most recent delivery attempts of each endpoint (the dispatcher
-- keeps the newest 100).
CREATE TABLE webhook_attempts (
	endpoint_id TEXT NOT NULL,
	n           INTEGER NOT NULL,
	event_id    TEXT NOT NULL,
	event_seq   BIGINT NOT NULL,
	event_name  TEXT NOT NULL,
	time        BIGINT NOT NULL,
	attempt     INTEGER NOT NULL,
	status      INTEGER NOT NULL,
	error       TEXT NOT NULL DEFAULT '',
	latency_us  BIGINT NOT NULL,
	PRIMARY KEY (endpoint_id, n)
) WITHOUT ROWID;
