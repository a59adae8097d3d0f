-- Version 8: push notifications (issue #12). (Version 7 is the webhooks'.)

-- Where a user's pushes go: a Web Push subscription (address is its
-- endpoint, with its keys) or an APNs or FCM device token (address is
-- the token). An address is registered once in an app: registering it
-- again moves it to the new user.
CREATE TABLE push_targets (
	app_id     TEXT NOT NULL,
	id         TEXT NOT NULL,
	user_id    TEXT NOT NULL,
	device     TEXT NOT NULL DEFAULT '',
	kind       TEXT NOT NULL,
	address    TEXT NOT NULL,
	p256dh     TEXT NOT NULL DEFAULT '',
	auth       TEXT NOT NULL DEFAULT '',
	created_at BIGINT NOT NULL,
	PRIMARY KEY (app_id, id),
	FOREIGN KEY (app_id, user_id) REFERENCES users (app_id, id)
);
CREATE UNIQUE INDEX push_targets_by_address ON push_targets (app_id, kind, address);
CREATE INDEX push_targets_by_user ON push_targets (app_id, user_id, created_at);

-- A user's push switch (a row only once they turned pushes off).
CREATE TABLE push_settings (
	app_id   TEXT NOT NULL,
	user_id  TEXT NOT NULL,
	disabled INTEGER NOT NULL DEFAULT 0,
	PRIMARY KEY (app_id, user_id)
) WITHOUT ROWID;

-- The conversations a user muted for their pushes.
CREATE TABLE push_mutes (
	app_id          TEXT NOT NULL,
	user_id         TEXT NOT NULL,
	conversation_id TEXT NOT NULL,
	PRIMARY KEY (app_id, user_id, conversation_id)
) WITHOUT ROWID;

-- An app's push configuration: its VAPID key pair (base64url: the P-256
-- private scalar and the uncompressed public point), made on first use,
-- its VAPID subject and the texts of its pushes.
CREATE TABLE push_apps (
	app_id         TEXT PRIMARY KEY REFERENCES apps (id),
	vapid_public   TEXT NOT NULL,
	vapid_private  TEXT NOT NULL,
	vapid_subject  TEXT NOT NULL,
	alert_template TEXT NOT NULL,
	burst_template TEXT NOT NULL
);
