-- Profile changes reach the people who see the profile: the users who
-- share a conversation with its owner at the time of the change. A
-- profile.update event is stored once (in events); this table says
-- through which conversations it goes, one row per conversation its user
-- took part in then. A reader's stream finds the profile changes of the
-- others within their own memberships by the same kind of range seek as
-- a conversation's events (see UserEvents). Changes made before this
-- migration reached their user only, and still do.
CREATE TABLE profile_shares (
	app_id          TEXT NOT NULL,
	conversation_id TEXT NOT NULL,
	seq             BIGINT NOT NULL, -- the profile.update event
	user_id         TEXT NOT NULL,   -- whose profile
	PRIMARY KEY (app_id, conversation_id, seq)
) WITHOUT ROWID;
-- Retention removes them with their events, oldest first.
CREATE INDEX profile_shares_by_seq ON profile_shares (seq);
