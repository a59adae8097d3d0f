-- Version 5: presence privacy and last seen.

-- A user who hides their presence appears offline, never seen, to the
-- other users of the app.
ALTER TABLE users ADD COLUMN presence_hidden INTEGER NOT NULL DEFAULT 0;

-- When the user's last realtime connection closed (microseconds since the
-- epoch), written by the realtime node about once a second, not on every
-- connection.
ALTER TABLE users ADD COLUMN last_seen_at INTEGER;

-- The privacy switch is the user's: apps let their users change it, as
-- new apps do by default. (An app may take it back with PATCH /v1/app.)
UPDATE apps SET user_editable_fields = json_insert(user_editable_fields, '$[#]', 'presenceHidden')
WHERE json_valid(user_editable_fields)
  AND NOT EXISTS (SELECT 1 FROM json_each(apps.user_editable_fields) WHERE value = 'presenceHidden');
