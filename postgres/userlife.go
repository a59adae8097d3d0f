package postgres

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/tidings/tidings"
)

// The life of a user as the app's server manages it: deactivation (a ban),
// revocation of their tokens, deletion. As in SQLite (sqlite/userlife.go).

func (s *UserService) DeactivateUser(ctx context.Context, id string) (*tidings.User, error) {
	return s.setDeactivated(ctx, id, true)
}

func (s *UserService) ReactivateUser(ctx context.Context, id string) (*tidings.User, error) {
	return s.setDeactivated(ctx, id, false)
}

// setDeactivated turns the user's deactivation on or off, and tells those
// who see their profile when it changes. The user's row is locked, as
// UpdateUser locks it (see there).
func (s *UserService) setDeactivated(ctx context.Context, id string, on bool) (*tidings.User, error) {
	c, err := serverCaller(ctx)
	if err != nil {
		return nil, err
	}
	var u *tidings.User
	err = s.db.update(ctx, func(tx *Tx) error {
		var err error
		if u, err = tx.findUser(c.AppID, id, true); err != nil {
			return err
		}
		if (u.DeactivatedAt != nil) == on {
			return nil
		}
		u.DeactivatedAt, u.UpdatedAt = nil, tx.now
		if on {
			at := tx.now
			u.DeactivatedAt = &at
		}
		if _, err := tx.exec(`UPDATE users SET deactivated_at = $1, updated_at = $2 WHERE app_id = $3 AND id = $4`,
			u.DeactivatedAt, tx.now, c.AppID, id); err != nil {
			return err
		}
		return tx.emitProfile(c, u, nil)
	})
	if err != nil {
		return nil, err
	}
	return u, nil
}

func (s *UserService) RevokeTokens(ctx context.Context, id string) (*tidings.User, error) {
	c, err := serverCaller(ctx)
	if err != nil {
		return nil, err
	}
	var u *tidings.User
	err = s.db.update(ctx, func(tx *Tx) error {
		var err error
		if u, err = tx.findUser(c.AppID, id, true); err != nil {
			return err
		}
		// Token times (iat) are whole seconds: every token issued until
		// now has one before the next second.
		nb := tx.now.Truncate(time.Second).Add(time.Second)
		u.TokensNotBefore = &nb
		_, err = tx.exec(`UPDATE users SET tokens_not_before = $1 WHERE app_id = $2 AND id = $3`, nb, c.AppID, id)
		return err
	})
	if err != nil {
		return nil, err
	}
	return u, nil
}

// anonymousJSON is the sender of the messages left by deleted users, as
// events carry it.
const anonymousJSON = `{"id":"","displayName":""}`

// errRelock ends an attempt of DeleteUser that found the user in a
// conversation it had not queued for: the next attempt queues for it too.
var errRelock = errors.New("the user joined a conversation meanwhile")

// maxDeleteAttempts bounds the attempts of DeleteUser (errRelock): each
// finds the user in a conversation they joined during the one before.
const maxDeleteAttempts = 20

// DeleteUser deletes the user and every trace of them, as SQLite does.
//
// On a cluster, sends and changes of the user's conversations run on
// other nodes at once. The deletion queues for every conversation the user
// ever took part in (their advisory locks, taken as a send batch takes
// them: before the transaction has an id, in one statement, in the order
// of their keys), so that it comes wholly before or after each change of
// those conversations, and its events take their positions in order.
// Then it locks the user's row: from there on, no one can add the user to
// another conversation (inserting a participant waits for that lock, and
// fails once the user is gone), nor save their cursors, push settings or
// targets. If the user joined a conversation between the read of their
// conversations and that lock, the attempt ends and the next queues for
// that conversation too.
func (s *UserService) DeleteUser(ctx context.Context, id string, messages tidings.MessagesOfDeleted) error {
	c, err := serverCaller(ctx)
	if err != nil {
		return err
	}
	if messages != tidings.EraseMessages && messages != tidings.AnonymizeMessages {
		return tidings.Errorf(tidings.EInvalid, "messages must be %q or %q, not %q", tidings.EraseMessages, tidings.AnonymizeMessages, messages)
	}
	var known []string // conversations found by an earlier attempt
	for attempt := 1; ; attempt++ {
		var found []string
		err := s.db.update(ctx, func(tx *Tx) error {
			found = nil
			convs, err := tx.deleteUser(c.AppID, id, messages, known)
			found = convs
			return err
		})
		if !errors.Is(err, errRelock) {
			return err
		}
		if attempt == maxDeleteAttempts {
			return tidings.Errorf(tidings.EUnavailable, "user %q keeps joining conversations while being deleted: try again", id)
		}
		known = found
	}
}

// deleteUser is an attempt of DeleteUser. It returns the user's
// conversations, with errRelock when they are more than those it queued
// for (known and those it read first).
func (tx *Tx) deleteUser(app, id string, messages tidings.MessagesOfDeleted, known []string) ([]string, error) {
	// Every conversation they ever took part in: the only ones whose
	// events and messages can name them. A plain read gives the
	// transaction no id: the locks may come after it.
	convs, err := tx.strings(`SELECT DISTINCT conversation_id FROM memberships WHERE app_id = $1 AND user_id = $2`, app, id)
	if err != nil {
		return nil, err
	}
	for _, k := range known {
		if !slices.Contains(convs, k) {
			convs = append(convs, k)
		}
	}
	if err := lockConversations(tx, app, convs); err != nil {
		return nil, err
	}
	if _, err := tx.findUser(app, id, true); err != nil {
		return nil, err
	}
	now, err := tx.strings(`SELECT DISTINCT conversation_id FROM memberships WHERE app_id = $1 AND user_id = $2`, app, id)
	if err != nil {
		return nil, err
	}
	for _, conv := range now {
		if !slices.Contains(convs, conv) {
			return append(convs, conv), errRelock
		}
	}
	convs = now
	// Their participations, locked: what locks one to write in its
	// conversation without queueing for it (an upload: a file's row names
	// its uploader) has committed, and is seen by the statements below;
	// what comes later finds the participation gone.
	current, err := tx.strings(`SELECT conversation_id FROM participants WHERE app_id = $1 AND user_id = $2
		ORDER BY conversation_id FOR UPDATE`, app, id)
	if err != nil {
		return nil, err
	}
	slices.Sort(convs)

	// The log first: the events about them go, the others stop naming
	// them. (The events emitted below name no one.)
	for _, q := range []string{
		`DELETE FROM profile_shares WHERE app_id = $1 AND user_id = $2`,
		`DELETE FROM events WHERE app_id = $1 AND user_id = $2`,
	} {
		if _, err := tx.exec(q, app, id); err != nil {
			return nil, err
		}
	}
	if _, err := tx.exec(`UPDATE events SET actor = NULL
		WHERE app_id = $1 AND conversation_id = ANY($2) AND actor IS NOT NULL AND actor->>'id' = $3`, app, convs, id); err != nil {
		return nil, err
	}
	// (jsonb: a json value keeps its text as written, and has no
	// operators to change it.)
	senderGone := `(payload::jsonb - '{clientId,profileId}'::text[]) || jsonb_build_object('sender', '` + anonymousJSON + `'::jsonb)`
	if messages == tidings.EraseMessages {
		senderGone = `(payload::jsonb - '{clientId,profileId,metadata,alert}'::text[])
			|| jsonb_build_object('sender', '` + anonymousJSON + `'::jsonb, 'parts', '[]'::jsonb)`
	}
	if _, err := tx.exec(`UPDATE events SET payload = (`+senderGone+`)::json
		WHERE app_id = $1 AND conversation_id = ANY($2) AND name = ANY($3) AND payload->'sender'->>'id' = $4`,
		app, convs, []string{tidings.EventMessageSent, tidings.EventMessageEdited, tidings.EventMessageDeleted}, id); err != nil {
		return nil, err
	}
	if _, err := tx.exec(`UPDATE events SET payload = jsonb_set(payload::jsonb, '{participants}', coalesce(
			(SELECT jsonb_agg(j.p ORDER BY j.n) FROM jsonb_array_elements(events.payload::jsonb->'participants') WITH ORDINALITY AS j (p, n)
			 WHERE j.p->>'userId' IS DISTINCT FROM $4), '[]'::jsonb))::json
		WHERE app_id = $1 AND conversation_id = ANY($2) AND name = $3 AND EXISTS (SELECT 1 FROM json_array_elements(
				CASE WHEN json_typeof(events.payload->'participants') = 'array' THEN events.payload->'participants' END) AS j (p)
			WHERE j.p->>'userId' = $4)`,
		app, convs, tidings.EventConversationCreate, id); err != nil {
		return nil, err
	}

	// Their messages and files.
	if messages == tidings.AnonymizeMessages {
		if _, err := tx.exec(`UPDATE messages SET sender_id = '', client_id = NULL
			WHERE app_id = $1 AND conversation_id = ANY($2) AND sender_id = $3`, app, convs, id); err != nil {
			return nil, err
		}
		if _, err := tx.exec(`UPDATE files SET uploader_id = '' WHERE app_id = $1 AND uploader_id = $2`, app, id); err != nil {
			return nil, err
		}
	} else {
		if err := tx.eraseMessages(app, convs, id); err != nil {
			return nil, err
		}
		// Unattached and as old as can be, their files go with the next
		// removal of unattached files (FileService.RemoveUnattached),
		// contents and all.
		if _, err := tx.exec(`UPDATE files SET uploader_id = '', attached = false, created_at = 'epoch'
			WHERE app_id = $1 AND uploader_id = $2`, app, id); err != nil {
			return nil, err
		}
	}

	// Their participations: each conversation learns that a deleted user
	// left it, without learning who. A conversation whose last owner they
	// were stays without an owner: the app's server may make another
	// participant owner.
	for _, conv := range current {
		if _, err := tx.exec(`DELETE FROM participants WHERE app_id = $1 AND conversation_id = $2 AND user_id = $3`, app, conv, id); err != nil {
			return nil, err
		}
		if _, err := tx.exec(`UPDATE conversations SET participant_count = participant_count - 1 WHERE app_id = $1 AND id = $2`, app, conv); err != nil {
			return nil, err
		}
		if err := tx.emit(app, tidings.EventParticipantRemoved, nil, conv, "",
			tidings.ParticipantPayload{ConversationID: conv, Reason: tidings.ReasonDeleted}); err != nil {
			return nil, err
		}
	}
	for _, q := range []string{
		`UPDATE conversations SET created_by = '' WHERE app_id = $1 AND created_by = $2`,
		`DELETE FROM memberships WHERE app_id = $1 AND user_id = $2`,
		`DELETE FROM cursors WHERE app_id = $1 AND user_id = $2`,
		`DELETE FROM push_targets WHERE app_id = $1 AND user_id = $2`,
		`DELETE FROM push_settings WHERE app_id = $1 AND user_id = $2`,
		`DELETE FROM push_mutes WHERE app_id = $1 AND user_id = $2`,
		`DELETE FROM users WHERE app_id = $1 AND id = $2`,
	} {
		if _, err := tx.exec(q, app, id); err != nil {
			return nil, err
		}
	}
	return convs, nil
}

// lockConversations queues the transaction for several conversations of
// an app, as lockConversation does for one, taking their locks in one
// statement in the order of their keys, as a send batch does
// (batchLocks): two transactions taking several never wait for each
// other in a cycle. It must come before anything gives the transaction
// an id.
func lockConversations(tx *Tx, appID string, convIDs []string) error {
	if len(convIDs) == 0 {
		return nil
	}
	names := make([]string, len(convIDs))
	for i, id := range convIDs {
		names[i] = appID + "/" + id
	}
	if _, err := tx.exec(batchLocks, names); err != nil {
		return fmt.Errorf("lock conversations: %w", err)
	}
	var fresh bool
	if err := tx.queryRow(`SELECT pg_current_xact_id_if_assigned() IS NULL`).Scan(&fresh); err != nil {
		return fmt.Errorf("lock conversations: %w", err)
	}
	if !fresh {
		return fmt.Errorf("lock conversations: the transaction already has an id (the locks must come first)")
	}
	return nil
}

// eraseMessages empties the messages userID sent to the conversations:
// each stays, deleted, without content nor sender, and those not deleted
// yet get a conversationMessage.deleted event, in the order of their
// conversations and seqs.
func (tx *Tx) eraseMessages(app string, convs []string, userID string) error {
	rows, err := tx.query(`SELECT `+messageColumns+messageFrom+`
		WHERE m.app_id = $1 AND m.conversation_id = ANY($2) AND m.sender_id = $3 AND m.deleted_at IS NULL
		ORDER BY m.conversation_id, m.seq`, app, convs, userID)
	if err != nil {
		return err
	}
	live, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (*tidings.Message, error) { return scanMessage(row) })
	if err != nil {
		return err
	}
	if _, err := tx.exec(`UPDATE messages SET sender_id = '', client_id = NULL, parts = '[]', metadata = NULL, alert = '',
		deleted_at = coalesce(deleted_at, $1) WHERE app_id = $2 AND conversation_id = ANY($3) AND sender_id = $4`,
		tx.now, app, convs, userID); err != nil {
		return err
	}
	for _, m := range live {
		m.Sender, m.ClientID, m.Parts, m.Metadata, m.Alert, m.DeletedAt = tidings.Profile{}, "", []tidings.Part{}, nil, "", &tx.now
		if err := tx.emit(app, tidings.EventMessageDeleted, nil, m.ConversationID, "", tidings.NewMessagePayload(m, m.ID)); err != nil {
			return err
		}
	}
	return nil
}

// strings runs a query of one text column and returns its values.
func (tx *Tx) strings(query string, args ...any) ([]string, error) {
	rows, err := tx.query(query, args...)
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, pgx.RowTo[string])
}
