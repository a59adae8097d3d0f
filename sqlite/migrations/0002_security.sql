-- Version 2: which profile fields users may edit themselves, unique
-- identifiers, hashed server keys.

-- The profile fields (JSON names) users of the app may change in their own
-- profile; the others only the app's server may set.
ALTER TABLE apps ADD COLUMN user_editable_fields TEXT NOT NULL DEFAULT '["displayName","avatarUrl"]';

-- An identifier belongs to one user of an app for its kind. Where several
-- users had the same one, the oldest keeps it and the others lose it (the
-- migration logs which, see DB.migrate).
UPDATE users SET identifier_value = NULL, identifier_kind = NULL
WHERE identifier_value IS NOT NULL AND EXISTS (
	SELECT 1 FROM users AS o
	WHERE o.app_id = users.app_id
	  AND o.identifier_kind IS users.identifier_kind
	  AND o.identifier_value = users.identifier_value
	  AND (o.created_at < users.created_at OR (o.created_at = users.created_at AND o.id < users.id))
);
CREATE UNIQUE INDEX users_by_identifier ON users (app_id, identifier_kind, identifier_value)
	WHERE identifier_value IS NOT NULL;

-- apps.server_key now holds "sha256:" and the hex SHA-256 of the key: the
-- keys stored in plain text before are hashed by DB.migrate after this
-- migration (SQLite has no SHA-256 of its own).
