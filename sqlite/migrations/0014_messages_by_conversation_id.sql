-- Version 14: messages_by_id on (app_id, conversation_id, id) again, as
-- in version 1. Migration 0006 indexed ids by app alone, so that sends,
-- then stored straight into messages, appended to the index's last page.
-- Since the message journal (0013) messages enter this table when their
-- conversation moves, all of its waiting messages at once, about ten
-- seconds after they were sent: by app alone, each moved message's entry
-- went to a page of its own among the index's last seconds (one page
-- written to the WAL per message, a quarter of all the pages a commit
-- wrote in 5,000 rooms of 2). By conversation first, the messages of one
-- move share their conversation's page of the index, as they share its
-- page of messages. Every lookup by id names the conversation. Ids stay
-- unique in an app (tidings.NewID); the index keeps them unique in their
-- conversation. On a large database this makes the index again once,
-- at the upgrade: 4.5 s for 2 million messages (docs/benchmarks.md).
DROP INDEX messages_by_id;
CREATE UNIQUE INDEX messages_by_id ON messages (app_id, conversation_id, id);
