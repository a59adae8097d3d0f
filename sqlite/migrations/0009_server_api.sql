-- Version 9: the app's server acting as itself (issue #12).

-- A system message is sent by the app's server as itself: it has no
-- sender (sender_id is ''). A message whose sender was deleted with their
-- messages kept has sender_id '' too, and system 0.
ALTER TABLE messages ADD COLUMN system INTEGER NOT NULL DEFAULT 0;
