-- Webhook endpoints (issue #12), as SQLite's 0007. The event log is their
-- outbox: an endpoint's last_seq is its position in it, so an event costs
-- no write of its own for webhooks. version changes with every change
-- made through the API, so that the dispatcher's progress never
-- overwrites a replay. events is the filter: event names, "*" or
-- prefixes ending in ".*".
CREATE TABLE webhook_endpoints (
	app_id        text COLLATE "C" NOT NULL REFERENCES apps (id),
	id            text COLLATE "C" NOT NULL,
	url           text COLLATE "C" NOT NULL,
	secret        text COLLATE "C" NOT NULL,
	events        text[] NOT NULL,
	disabled      boolean NOT NULL DEFAULT false,
	failing       boolean NOT NULL DEFAULT false,
	failing_since timestamptz,
	last_seq      bigint NOT NULL,
	missed_up_to  bigint NOT NULL DEFAULT 0,
	missed_at     timestamptz,
	version       bigint NOT NULL DEFAULT 1,
	created_at    timestamptz NOT NULL,
	updated_at    timestamptz NOT NULL,
	PRIMARY KEY (app_id, id)
);
CREATE UNIQUE INDEX webhook_endpoints_by_id ON webhook_endpoints (id);

-- The most recent delivery attempts of each endpoint (the newest 100 are
-- kept), numbered by n within it. They go with their endpoint.
CREATE TABLE webhook_attempts (
	endpoint_id text COLLATE "C" NOT NULL REFERENCES webhook_endpoints (id) ON DELETE CASCADE,
	n           bigint NOT NULL,
	event_id    text COLLATE "C" NOT NULL,
	event_seq   bigint NOT NULL,
	event_name  text COLLATE "C" NOT NULL,
	time        timestamptz NOT NULL,
	attempt     integer NOT NULL,
	status      integer NOT NULL,
	error       text COLLATE "C" NOT NULL DEFAULT '',
	latency_us  bigint NOT NULL,
	PRIMARY KEY (endpoint_id, n)
);
