package sqlite

import (
	"context"
	"database/sql"
	"slices"
	"strconv"
	"time"

	"github.com/tidings/tidings"
)

// The life of a user as the app's server manages it: deactivation (a ban),
// revocation of their tokens, deletion.

func (s *UserService) DeactivateUser(ctx context.Context, id string) (*tidings.User, error) {
	return s.setDeactivated(ctx, id, true)
}

func (s *UserService) ReactivateUser(ctx context.Context, id string) (*tidings.User, error) {
	return s.setDeactivated(ctx, id, false)
}

// setDeactivated turns the user's deactivation on or off, and tells those
// who see their profile when it changes.
func (s *UserService) setDeactivated(ctx context.Context, id string, on bool) (*tidings.User, error) {
	c, err := serverCaller(ctx)
	if err != nil {
		return nil, err
	}
	var u *tidings.User
	err = s.db.updateUser(ctx, c.AppID, id, func(tx *Tx) error {
		var err error
		if u, err = tx.findUser(c.AppID, id); err != nil {
			return err
		}
		if (u.DeactivatedAt != nil) == on {
			return nil
		}
		var at any
		u.DeactivatedAt, u.UpdatedAt = nil, tx.now
		if on {
			u.DeactivatedAt, at = &tx.now, micros(tx.now)
		}
		if _, err := tx.exec(`UPDATE users SET deactivated_at = ?, updated_at = ? WHERE app_id = ? AND id = ?`,
			at, micros(tx.now), c.AppID, id); err != nil {
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
	err = s.db.updateUser(ctx, c.AppID, id, func(tx *Tx) error {
		var err error
		if u, err = tx.findUser(c.AppID, id); err != nil {
			return err
		}
		// Token times (iat) are whole seconds: every token issued until
		// now has one before the next second.
		nb := tx.now.Truncate(time.Second).Add(time.Second)
		u.TokensNotBefore = &nb
		_, err = tx.exec(`UPDATE users SET tokens_not_before = ? WHERE app_id = ? AND id = ?`, micros(nb), c.AppID, id)
		return err
	})
	if err != nil {
		return nil, err
	}
	return u, nil
}

// anonymous is the sender of the messages left by deleted users, as
// events carry it.
const anonymousJSON = `{"id":"","displayName":""}`

func (s *UserService) DeleteUser(ctx context.Context, id string, messages tidings.MessagesOfDeleted) error {
	c, err := serverCaller(ctx)
	if err != nil {
		return err
	}
	if messages != tidings.EraseMessages && messages != tidings.AnonymizeMessages {
		return tidings.Errorf(tidings.EInvalid, "messages must be %q or %q, not %q", tidings.EraseMessages, tidings.AnonymizeMessages, messages)
	}
	app := c.AppID
	// Every conversation they ever took part in: the only ones whose
	// events and messages can name them, and the only ones the job reads
	// or changes of what the send cache and the journal hold (its scope,
	// read by the writer just before the job: a join committed before it
	// in the batch counts).
	ofUser := func(tx *Tx) (convs, current []string, err error) {
		if convs, err = tx.strings(`SELECT DISTINCT conversation_id FROM memberships WHERE app_id = ? AND user_id = ?`, app, id); err != nil {
			return nil, nil, err
		}
		current, err = tx.strings(`SELECT conversation_id FROM participants WHERE app_id = ? AND user_id = ?`, app, id)
		return convs, current, err
	}
	// The writer reads the scope in the job's transaction just before the
	// job (DB.prepare), and nothing between changes who took part where:
	// the job uses the lists the scope was made of.
	var convs, current []string
	read := false
	scopeOf := func(tx *Tx) (*scope, error) {
		var err error
		if convs, current, err = ofUser(tx); err != nil {
			return nil, err
		}
		read = true
		s := &scope{users: []userKey{{app, id}}}
		all := slices.Concat(convs, current)
		slices.Sort(all)
		for _, conv := range slices.Compact(all) {
			s.convs = append(s.convs, convKey{app, conv})
		}
		return s, nil
	}
	return s.db.updateScopedBy(ctx, scopeOf, func(tx *Tx) error {
		if _, err := tx.findUser(c.AppID, id); err != nil {
			return err
		}
		if !read {
			var err error
			if convs, current, err = ofUser(tx); err != nil {
				return err
			}
		}
		read = false // a batch run again reads the scope again

		// The log first: the events about them go, the others stop naming
		// them. (The events emitted below name no one.)
		for _, q := range []string{
			`DELETE FROM profile_shares WHERE app_id = ? AND user_id = ?`,
			`DELETE FROM events WHERE app_id = ? AND user_id = ?`,
		} {
			if _, err := tx.exec(q, app, id); err != nil {
				return err
			}
		}
		senderGone := `json_remove(json_set(payload, '$.sender', json('` + anonymousJSON + `')), '$.clientId', '$.profileId')`
		if messages == tidings.EraseMessages {
			senderGone = `json_remove(json_set(payload, '$.sender', json('` + anonymousJSON + `'), '$.parts', json('[]')),
				'$.clientId', '$.profileId', '$.metadata', '$.alert')`
		}
		// A conversation's events are those of events_by_conversation
		// (its condition said, for SQLite to use it) and the sends after
		// sendsIndexedThrough, which only their messages name (see
		// userStreamQuery): each update runs on both.
		for _, conv := range convs {
			for _, events := range eventsOfConversation(tx.db.sendsIndexedThrough) {
				if _, err := tx.exec(`UPDATE events SET actor = NULL
					WHERE `+events+` AND actor IS NOT NULL AND json_extract(actor, '$.id') = ?3`, app, conv, id); err != nil {
					return err
				}
				if _, err := tx.exec(`UPDATE events SET payload = `+senderGone+`
					WHERE `+events+` AND name IN (?3, ?4, ?5) AND json_extract(payload, '$.sender.id') = ?6`,
					app, conv, tidings.EventMessageSent, tidings.EventMessageEdited, tidings.EventMessageDeleted, id); err != nil {
					return err
				}
			}
			k := tx.db.sendsIndexedThrough
			if _, err := tx.exec(`UPDATE events SET payload = json_set(payload, '$.participants',
					(SELECT json_group_array(json(j.value)) FROM json_each(events.payload, '$.participants') AS j
					 WHERE json_extract(j.value, '$.userId') IS NOT ?))
				WHERE app_id = ? AND conversation_id = ? AND `+eventIndexed(k)+` AND name = ? AND EXISTS
					(SELECT 1 FROM json_each(events.payload, '$.participants') AS j WHERE json_extract(j.value, '$.userId') = ?)`,
				id, app, conv, tidings.EventConversationCreate, id); err != nil {
				return err
			}
		}

		// Their messages and files.
		for _, conv := range convs {
			if messages == tidings.AnonymizeMessages {
				if _, err := tx.exec(`UPDATE messages SET sender_id = '', client_id = NULL
					WHERE app_id = ? AND conversation_id = ? AND sender_id = ?`, app, conv, id); err != nil {
					return err
				}
				continue
			}
			if err := tx.eraseMessages(app, conv, id); err != nil {
				return err
			}
		}
		if messages == tidings.AnonymizeMessages {
			if _, err := tx.exec(`UPDATE files SET uploader_id = '' WHERE app_id = ? AND uploader_id = ?`, app, id); err != nil {
				return err
			}
		} else {
			// Unattached and as old as can be, their files go with the
			// next removal of unattached files (FileService.RemoveUnattached),
			// contents and all.
			if _, err := tx.exec(`UPDATE files SET uploader_id = '', attached = 0, created_at = 0 WHERE app_id = ? AND uploader_id = ?`, app, id); err != nil {
				return err
			}
		}

		// Their participations: each conversation learns that a deleted
		// user left it, without learning who. A conversation whose last
		// owner they were stays without an owner: the app's server may
		// make another participant owner.
		for _, conv := range current {
			if _, err := tx.exec(`DELETE FROM participants WHERE app_id = ? AND conversation_id = ? AND user_id = ?`, app, conv, id); err != nil {
				return err
			}
			if _, err := tx.exec(`UPDATE conversations SET participant_count = participant_count - 1 WHERE app_id = ? AND id = ?`, app, conv); err != nil {
				return err
			}
			if err := tx.emit(app, tidings.EventParticipantRemoved, nil, conv, "",
				tidings.ParticipantPayload{ConversationID: conv, Reason: tidings.ReasonDeleted}); err != nil {
				return err
			}
		}
		tx.pushTargetsChanged(app)
		for _, q := range []string{
			`UPDATE conversations SET created_by = '' WHERE app_id = ? AND created_by = ?`,
			`DELETE FROM memberships WHERE app_id = ? AND user_id = ?`,
			`DELETE FROM cursors WHERE app_id = ? AND user_id = ?`,
			`DELETE FROM push_targets WHERE app_id = ? AND user_id = ?`,
			`DELETE FROM push_settings WHERE app_id = ? AND user_id = ?`,
			`DELETE FROM push_mutes WHERE app_id = ? AND user_id = ?`,
			`DELETE FROM users WHERE app_id = ? AND id = ?`,
		} {
			if _, err := tx.exec(q, app, id); err != nil {
				return err
			}
		}
		return nil
	})
}

// eraseMessages empties the messages userID sent to a conversation: each
// stays, deleted, without content nor sender, and those not deleted yet
// get a conversationMessage.deleted event.
func (tx *Tx) eraseMessages(app, conv, userID string) error {
	rows, err := tx.query(`SELECT `+messageColumns+messageFrom+`
		WHERE m.app_id = ? AND m.conversation_id = ? AND m.sender_id = ? AND m.deleted_at IS NULL`, app, conv, userID)
	if err != nil {
		return err
	}
	var live []*tidings.Message
	for rows.Next() {
		m, err := scanMessage(rows)
		if err != nil {
			rows.Close()
			return err
		}
		live = append(live, m)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return err
	}
	if _, err := tx.exec(`UPDATE messages SET sender_id = '', client_id = NULL, parts = '[]', metadata = NULL, alert = '',
		deleted_at = coalesce(deleted_at, ?) WHERE app_id = ? AND conversation_id = ? AND sender_id = ?`, micros(tx.now), app, conv, userID); err != nil {
		return err
	}
	for _, m := range live {
		m.Sender, m.ClientID, m.Parts, m.Metadata, m.Alert, m.DeletedAt = tidings.Profile{}, "", []tidings.Part{}, nil, "", &tx.now
		if err := tx.emit(app, tidings.EventMessageDeleted, nil, conv, "", tidings.NewMessagePayload(m, m.ID)); err != nil {
			return err
		}
	}
	return nil
}

// strings runs a query of one text column and returns its values.
func (tx *Tx) strings(query string, args ...any) ([]string, error) {
	return scanStrings(tx.query(query, args...))
}

// strings is Tx.strings for a reader.
func (db *DB) strings(ctx context.Context, query string, args ...any) ([]string, error) {
	return scanStrings(db.query(ctx, query, args...))
}

// scanStrings returns the values of rows' one text column, and closes
// them.
func scanStrings(rows *sql.Rows, err error) ([]string, error) {
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var v string
		if err := rows.Scan(&v); err != nil {
			return nil, err
		}
		out = append(out, v)
	}
	return out, rows.Err()
}

// eventsOfConversation returns the two conditions that select the events
// of conversation ?2 of app ?1 (of the events table, unqualified): those
// in events_by_conversation, with its condition said for SQLite to use
// it, and the sends after k (sendsIndexedThrough), which only their
// messages name (see userStreamQuery).
func eventsOfConversation(k int64) []string {
	return []string{`app_id = ?1 AND conversation_id = ?2 AND ` + eventIndexed(k),
		`seq IN (SELECT event_seq FROM messages WHERE app_id = ?1 AND conversation_id = ?2 AND event_seq > ` + strconv.FormatInt(k, 10) + `)`}
}
