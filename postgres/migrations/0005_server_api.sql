-- Version 5: the app's server acting as itself (issue #12); SQLite's 0009.

-- A system message is sent by the app's server as itself: it has no
-- sender (sender_id is ''). A message whose sender was deleted with their
-- messages kept has sender_id '' too, and system false.
ALTER TABLE messages ADD COLUMN system boolean NOT NULL DEFAULT false;

-- A deactivated (banned) user's tokens are refused; they cannot connect.
ALTER TABLE users ADD COLUMN deactivated_at timestamptz;

-- The app revoked the user's tokens: those issued before this time (on a
-- whole second) are refused.
ALTER TABLE users ADD COLUMN tokens_not_before timestamptz;

-- A muted participant cannot send in the conversation until unmuted.
ALTER TABLE participants ADD COLUMN muted boolean NOT NULL DEFAULT false;

-- A rotated signing secret keeps verifying the tokens it signed until
-- previous_secret_until, the overlap of the rotation.
ALTER TABLE apps ADD COLUMN previous_signing_secret text COLLATE "C" NOT NULL DEFAULT '';
ALTER TABLE apps ADD COLUMN previous_secret_until timestamptz;
