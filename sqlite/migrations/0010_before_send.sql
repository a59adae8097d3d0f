-- Version 10: the before-send hook of an app (issue #12): each new
-- message of its users is POSTed to url before it is stored.
CREATE TABLE before_send_hooks (
	app_id     TEXT NOT NULL PRIMARY KEY REFERENCES apps (id),
	url        TEXT NOT NULL,
	secret     TEXT NOT NULL,
	timeout_ms INTEGER NOT NULL,
	fail_open  BOOLEAN NOT NULL DEFAULT FALSE,
	created_at BIGINT NOT NULL,
	updated_at BIGINT NOT NULL
);
