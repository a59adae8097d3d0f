-- Message ids sort by creation time (tidings.NewID): indexed by app and id
-- alone, each new message's entry goes at the end of the index, into the
-- page the other new messages of the same commit write too. Indexed by
-- conversation first, as before, each send wrote a page of its own
-- conversation's part of the index: with thousands of active
-- conversations, one more page written to the WAL per message. Ids are
-- unique in an app; a lookup by conversation and id still checks the
-- conversation.
DROP INDEX messages_by_id;
CREATE UNIQUE INDEX messages_by_id ON messages (app_id, id);
