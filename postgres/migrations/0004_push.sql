-- Version 4: push notifications (issue #12), as SQLite's 0008_push.sql.
-- (Versions 2 and 3 are other changes'; migrations apply in the order of
-- their names, each once, so this one applies whether or not they exist
-- yet, and they apply after it if they come later.)

-- Where a user's pushes go: a Web Push subscription (address is its
-- endpoint, with its keys) or an APNs or FCM device token (address is
-- the token). An address is registered once in an app: registering it
-- again moves it to the new user.
CREATE TABLE push_targets (
	app_id     text COLLATE "C" NOT NULL,
	id         text COLLATE "C" NOT NULL,
	user_id    text COLLATE "C" NOT NULL,
	device     text COLLATE "C" NOT NULL DEFAULT '',
	kind       text COLLATE "C" NOT NULL,
	address    text COLLATE "C" NOT NULL,
	p256dh     text COLLATE "C" NOT NULL DEFAULT '',
	auth       text COLLATE "C" NOT NULL DEFAULT '',
	created_at timestamptz NOT NULL,
	PRIMARY KEY (app_id, id),
	FOREIGN KEY (app_id, user_id) REFERENCES users (app_id, id)
);
CREATE UNIQUE INDEX push_targets_by_address ON push_targets (app_id, kind, address);
CREATE INDEX push_targets_by_user ON push_targets (app_id, user_id, created_at);

-- A user's push switch (a row only once they turned pushes off).
CREATE TABLE push_settings (
	app_id   text COLLATE "C" NOT NULL,
	user_id  text COLLATE "C" NOT NULL,
	disabled boolean NOT NULL DEFAULT false,
	PRIMARY KEY (app_id, user_id)
);

-- The conversations a user muted for their pushes.
CREATE TABLE push_mutes (
	app_id          text COLLATE "C" NOT NULL,
	user_id         text COLLATE "C" NOT NULL,
	conversation_id text COLLATE "C" NOT NULL,
	PRIMARY KEY (app_id, user_id, conversation_id)
);

-- An app's push configuration: its VAPID key pair (base64url: the P-256
-- private scalar and the uncompressed public point), made on first use
-- (by one node: the others read it), its VAPID subject and the texts of
-- its pushes.
CREATE TABLE push_apps (
	app_id         text COLLATE "C" PRIMARY KEY REFERENCES apps (id),
	vapid_public   text COLLATE "C" NOT NULL,
	vapid_private  text COLLATE "C" NOT NULL,
	vapid_subject  text COLLATE "C" NOT NULL,
	alert_template text COLLATE "C" NOT NULL,
	burst_template text COLLATE "C" NOT NULL
);
