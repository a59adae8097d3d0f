-- Version 7: SQLite's 0011 gives each message the seq of its sent event,
-- through which the SQLite store replays sends (one index page less per
-- send there). PostgreSQL keeps every event in events_by_conversation and
-- does not fill the column yet: it is here so that both stores have the
-- same columns (schema_test.go).
ALTER TABLE messages ADD COLUMN event_seq bigint;
