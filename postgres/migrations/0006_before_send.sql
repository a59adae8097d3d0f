-- Version 6: the before-send hook of an app (issue #12); SQLite's 0010.
CREATE TABLE before_send_hooks (
	app_id     text COLLATE "C" NOT NULL PRIMARY KEY REFERENCES apps (id),
	url        text COLLATE "C" NOT NULL,
	secret     text COLLATE "C" NOT NULL,
	timeout_ms integer NOT NULL,
	fail_open  boolean NOT NULL DEFAULT false,
	created_at timestamptz NOT NULL,
	updated_at timestamptz NOT NULL
);
