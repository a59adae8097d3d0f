-- Version 8: the log of the users whose access may have ended (issue
-- #14), as SQLite's 0012: deactivated (or reactivated), tokens revoked,
-- deleted, by any writer of the database. A realtime node reads the
-- entries after the last it saw every --access-check, instead of reading
-- every user of its connections again (tidings.AccessLog).
--
-- A reader must never see an entry before an older one commits (it would
-- move past it for good): the trigger takes a lock on the table that
-- only writers of entries take (SHARE ROW EXCLUSIVE conflicts with
-- itself, not with readers) before it takes a seq, so that entries
-- commit in seq order. Entries are rare (a change of a user's access).
--
-- A deletion leaves no trace of the user: it removes the user's entries
-- and logs their app with an empty user_id (a user of the app was
-- deleted: a node reads all its users of that app again).
--
-- Only the newest 10,000 entries are kept: a node that finds older
-- entries gone reads all its users once.
CREATE TABLE access_changes (
	seq     bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
	app_id  text COLLATE "C" NOT NULL,
	user_id text COLLATE "C" NOT NULL
);
CREATE INDEX access_changes_by_user ON access_changes (app_id, user_id);
CREATE FUNCTION log_access_change() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
	s bigint;
BEGIN
	LOCK TABLE access_changes IN SHARE ROW EXCLUSIVE MODE;
	IF TG_OP = 'DELETE' THEN
		DELETE FROM access_changes WHERE app_id = OLD.app_id AND user_id = OLD.id;
		INSERT INTO access_changes (app_id, user_id) VALUES (OLD.app_id, '') RETURNING seq INTO s;
	ELSE
		INSERT INTO access_changes (app_id, user_id) VALUES (NEW.app_id, NEW.id) RETURNING seq INTO s;
	END IF;
	DELETE FROM access_changes WHERE seq <= s - 10000;
	RETURN NULL;
END
$$;
CREATE TRIGGER users_access_changed AFTER UPDATE OF deactivated_at, tokens_not_before ON users
	FOR EACH ROW
	WHEN (NEW.deactivated_at IS DISTINCT FROM OLD.deactivated_at OR NEW.tokens_not_before IS DISTINCT FROM OLD.tokens_not_before)
	EXECUTE FUNCTION log_access_change();
CREATE TRIGGER users_deleted AFTER DELETE ON users
	FOR EACH ROW EXECUTE FUNCTION log_access_change();
