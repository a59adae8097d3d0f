-- Version 13: the message journal (issue #14, sqlite/journal.go). A send
-- stores its message here, keyed by its event's seq: the sends of one
-- commit go to the end of one table and share its last page. Stored
-- straight into messages, each send wrote a page of its own
-- conversation's part of messages and one of messages_by_client_id (with
-- thousands of active conversations, two of the three or four pages a
-- send wrote). The writer moves a conversation's messages into messages
-- later, all of them at once, so that the pages of messages are written
-- once for several sends; before any write that may read them, and before
-- a reader of that conversation's messages reads; Open moves what a crash
-- left. The same columns as messages, less those a new message has not
-- set yet.
CREATE TABLE message_journal (
	event_seq       INTEGER PRIMARY KEY,
	app_id          TEXT NOT NULL,
	conversation_id TEXT NOT NULL,
	seq             BIGINT NOT NULL,
	id              TEXT NOT NULL,
	sender_id       TEXT NOT NULL,
	client_id       TEXT,
	parts           TEXT NOT NULL,
	metadata        TEXT,
	alert           TEXT NOT NULL DEFAULT '',
	sent_at         BIGINT NOT NULL
);
