-- Version 9: the app's server acting as itself (issue #12).

-- A system message is sent by the app's server as itself: it has no
-- sender (sender_id is ''). A message whose sender was deleted with their
-- messages kept has sender_id '' too, and system 0.
ALTER TABLE messages ADD COLUMN system INTEGER NOT NULL DEFAULT 0;

-- A deactivated (banned) user's tokens are refused; they cannot connect.
ALTER TABLE users ADD COLUMN deactivated_at BIGINT;

-- The app revoked the user's tokens: those issued before this time
-- (microseconds, on a whole second) are refused.
ALTER TABLE users ADD COLUMN tokens_not_before BIGINT;

-- A muted participant cannot send in the conversation until unmuted.
ALTER TABLE participants ADD COLUMN muted INTEGER NOT NULL DEFAULT 0;

-- A rotated signing secret keeps verifying the tokens it signed until
-- previous_secret_until (microseconds), the overlap of the rotation.
ALTER TABLE apps ADD COLUMN previous_signing_secret TEXT NOT NULL DEFAULT '';
ALTER TABLE apps ADD COLUMN previous_secret_until BIGINT;
