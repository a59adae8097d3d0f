-- Version 12: the log of the users whose access may have ended (issue
-- #14): deactivated (or reactivated), tokens revoked, deleted, by any
-- writer of the database, in commit order (one writer at a time). A
-- realtime node reads the entries after the last it saw every
-- --access-check, instead of reading every user of its connections again
-- (tidings.AccessLog). Triggers write it, so that no path that changes a
-- user can forget to.
--
-- A deletion leaves no trace of the user: it removes the user's entries
-- and logs their app with an empty user_id (a user of the app was
-- deleted: a node reads all its users of that app again).
--
-- Only the newest 10,000 entries are kept: a node that finds older
-- entries gone reads all its users once.
CREATE TABLE access_changes (
	seq     INTEGER PRIMARY KEY AUTOINCREMENT,
	app_id  TEXT NOT NULL,
	user_id TEXT NOT NULL
);
CREATE INDEX access_changes_by_user ON access_changes (app_id, user_id);
CREATE TRIGGER users_access_changed AFTER UPDATE OF deactivated_at, tokens_not_before ON users
WHEN NEW.deactivated_at IS NOT OLD.deactivated_at OR NEW.tokens_not_before IS NOT OLD.tokens_not_before
BEGIN
	INSERT INTO access_changes (app_id, user_id) VALUES (NEW.app_id, NEW.id);
	DELETE FROM access_changes WHERE seq <= (SELECT MAX(seq) FROM access_changes) - 10000;
END;
CREATE TRIGGER users_deleted AFTER DELETE ON users
BEGIN
	DELETE FROM access_changes WHERE app_id = OLD.app_id AND user_id = OLD.id;
	INSERT INTO access_changes (app_id, user_id) VALUES (OLD.app_id, '');
	DELETE FROM access_changes WHERE seq <= (SELECT MAX(seq) FROM access_changes) - 10000;
END;
