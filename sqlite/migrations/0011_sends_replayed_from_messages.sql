-- A send no longer writes a page of its conversation's part of
-- events_by_conversation: replay reads a conversation's sends through
-- messages (in the page the send wrote anyway), each message naming its
-- event. Within a conversation, message seqs and the seqs of their sent
-- events grow together (one writer assigns both, in the same job), so
-- the sends after an event seq are the messages after a message seq (see
-- eventlog.go). With thousands of active conversations, one page less
-- written to the WAL per message.
--
-- Messages stored before keep no event seq, and their sent events stay
-- in the index: the migration's Go step (afterMigration in db.go) makes
-- the index again, WHERE name <> 'conversationMessage.sent' OR seq <= K,
-- K being the newest event now, which it keeps in meta as
-- sends_indexed_through. The queries that use the index repeat that
-- condition. No existing row is written again.
ALTER TABLE messages ADD COLUMN event_seq BIGINT;
DROP INDEX events_by_conversation;
