package postgres

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/tidings/tidings"
)

func serverCtx(app string) context.Context {
	return tidings.NewContextWithCaller(context.Background(), tidings.Caller{AppID: app, Server: true})
}

func userCtx(app, user string) context.Context {
	return tidings.NewContextWithCaller(context.Background(), tidings.Caller{AppID: app, UserID: user})
}

// fixture opens a DB with app "a" and the given users.
func fixture(t *testing.T, pub tidings.EventPublisher, users ...string) *DB {
	t.Helper()
	db := openDB(t, pub)
	if _, err := NewAppService(db).CreateApp(context.Background(), "a", "app a"); err != nil {
		t.Fatal(err)
	}
	for _, u := range users {
		if _, err := NewUserService(db).CreateUser(serverCtx("a"), &tidings.User{ID: u}); err != nil {
			t.Fatal(err)
		}
	}
	return db
}

// join opens a membership span of user in conv from the current position,
// as the conversation service does (with its event).
func join(t *testing.T, db *DB, conv, user string) {
	t.Helper()
	err := db.update(context.Background(), func(tx *Tx) error {
		ev, err := tx.emitEvent("a", tidings.EventParticipantAdded, nil, conv, user, tidings.ParticipantPayload{ConversationID: conv, ProfileID: user})
		if err != nil {
			return err
		}
		_, err = tx.exec(`INSERT INTO memberships (app_id, conversation_id, user_id, from_seq) VALUES ('a', $1, $2, $3)`, conv, user, ev.Seq)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
}

// leave ends user's span in conv with a participantRemoved event.
func leave(t *testing.T, db *DB, conv, user string) {
	t.Helper()
	err := db.update(context.Background(), func(tx *Tx) error {
		ev, err := tx.emitEvent("a", tidings.EventParticipantRemoved, nil, conv, user, tidings.ParticipantPayload{ConversationID: conv, ProfileID: user})
		if err != nil {
			return err
		}
		_, err = tx.exec(`UPDATE memberships SET to_seq = $1 WHERE app_id = 'a' AND conversation_id = $2 AND user_id = $3 AND to_seq IS NULL`, ev.Seq, conv, user)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
}

// profileEvents returns the profile.update events about `about` in
// user's stream, as "about:displayName".
func profileEvents(t *testing.T, db *DB, user, about string) []string {
	t.Helper()
	evs, err := NewEventLog(db).UserEvents(context.Background(), "a", user, 0, 1000)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range evs {
		if e.Name == tidings.EventProfileUpdate && e.UserID == about {
			out = append(out, e.UserID+":"+payloadName(t, e))
		}
	}
	return out
}

func payloadName(t *testing.T, e *tidings.Event) string {
	var p tidings.ProfilePayload
	if err := unmarshalJSON(e.Payload, &p); err != nil || p.User == nil {
		t.Fatalf("payload %s: %v", e.Payload, err)
	}
	return p.User.DisplayName
}

// TestProfileShares: a profile change reaches the users sharing a
// conversation with its user at the time, once each, and nobody else; the
// published event names those conversations.
func TestProfileShares(t *testing.T) {
	pub := &recorder{}
	db := fixture(t, pub, "alice", "bob", "carol")
	users := NewUserService(db)
	join(t, db, "c", "alice")
	join(t, db, "c", "bob")
	join(t, db, "d", "alice")
	join(t, db, "d", "bob")
	rename := func(ctx context.Context, name string) *tidings.User {
		t.Helper()
		u, err := users.UpdateUser(ctx, "alice", tidings.UserUpdate{DisplayName: &name})
		if err != nil {
			t.Fatal(err)
		}
		return u
	}
	rename(userCtx("a", "alice"), "A1")
	leave(t, db, "c", "bob")
	leave(t, db, "d", "bob")
	rename(serverCtx("a"), "A2")

	if got := profileEvents(t, db, "bob", "alice"); !slices.Equal(got, []string{"alice:A1"}) {
		t.Errorf("bob's events about alice %q, want her change while they shared conversations, once", got)
	}
	if got := profileEvents(t, db, "carol", "alice"); len(got) != 0 {
		t.Errorf("carol, who shares nothing, received %q", got)
	}
	if got := profileEvents(t, db, "alice", "alice"); !slices.Equal(got, []string{"alice:alice", "alice:A1", "alice:A2"}) {
		t.Errorf("alice's own profile events %q", got)
	}
	// Published with the conversations they go through.
	waitFor(t, "alice's second change to be published", func() bool {
		for _, e := range pub.all() {
			if e.Name == tidings.EventProfileUpdate && e.UserID == "alice" && payloadName(t, e) == "A2" {
				return true
			}
		}
		return false
	})
	for _, e := range pub.all() {
		if e.Name != tidings.EventProfileUpdate || e.UserID != "alice" {
			continue
		}
		// alice still takes part in both after bob left: A2 goes through
		// them, to nobody.
		want := map[string][]string{"alice": nil, "A1": {"c", "d"}, "A2": {"c", "d"}}[payloadName(t, e)]
		if !slices.Equal(e.Conversations, want) {
			t.Errorf("published %s with conversations %v, want %v", payloadName(t, e), e.Conversations, want)
		}
		if name := payloadName(t, e); name == "A1" && (e.Actor == nil || e.Actor.ID != "alice") {
			t.Errorf("alice's own change published with actor %+v", e.Actor)
		}
	}
}

// TestLastSeen: last seen never moves back, unknown users are skipped, and
// UsersPresence tells the privacy switch; the profile event never carries
// last seen.
func TestLastSeen(t *testing.T) {
	db := fixture(t, nil, "alice", "bob", "carol")
	users := NewUserService(db)
	ctx := context.Background()
	t0 := time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)
	err := users.SaveLastSeen(ctx, []tidings.LastSeen{
		{AppID: "a", UserID: "alice", At: t0},
		{AppID: "a", UserID: "alice", At: t0.Add(time.Minute)}, // the latest of a batch wins
		{AppID: "a", UserID: "bob", At: t0},
		{AppID: "a", UserID: "nobody", At: t0},
		{AppID: "b", UserID: "alice", At: t0},
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := users.SaveLastSeen(ctx, []tidings.LastSeen{{AppID: "a", UserID: "alice", At: t0}}); err != nil {
		t.Fatal(err)
	}
	hidden := true
	if _, err := users.UpdateUser(userCtx("a", "bob"), "bob", tidings.UserUpdate{PresenceHidden: &hidden}); err != nil {
		t.Fatal(err)
	}
	ps, err := users.UsersPresence(ctx, "a", []string{"alice", "bob", "carol", "nobody"})
	if err != nil {
		t.Fatal(err)
	}
	slices.SortFunc(ps, func(a, b tidings.UserPresence) int { return cmpString(a.UserID, b.UserID) })
	want := []tidings.UserPresence{
		{UserID: "alice", LastSeenAt: t0.Add(time.Minute)},
		{UserID: "bob", Hidden: true, LastSeenAt: t0},
		{UserID: "carol"},
	}
	if len(ps) != len(want) {
		t.Fatalf("presence %+v, want %+v", ps, want)
	}
	for i := range want {
		if ps[i].UserID != want[i].UserID || ps[i].Hidden != want[i].Hidden || !ps[i].LastSeenAt.Equal(want[i].LastSeenAt) {
			t.Errorf("presence %+v, want %+v", ps[i], want[i])
		}
	}
	// Others do not see the last seen of a user who hides it; the user does.
	if u, err := users.FindUserByID(userCtx("a", "alice"), "bob"); err != nil || u.LastSeenAt != nil {
		t.Errorf("alice finds bob %+v, %v: want no last seen", u, err)
	}
	if u, err := users.FindUserByID(userCtx("a", "bob"), "bob"); err != nil || u.LastSeenAt == nil || !u.LastSeenAt.Equal(t0) {
		t.Errorf("bob finds himself %+v, %v: want his last seen", u, err)
	}
	evs, err := NewEventLog(db).UserEvents(ctx, "a", "bob", 0, 100)
	if err != nil || len(evs) == 0 {
		t.Fatalf("bob's events %v, %v", evs, err)
	}
	var p tidings.ProfilePayload
	if err := unmarshalJSON(evs[len(evs)-1].Payload, &p); err != nil || p.User == nil || p.User.LastSeenAt != nil || !p.User.PresenceHidden {
		t.Errorf("bob's last profile event %s: want the switch on and no last seen", evs[len(evs)-1].Payload)
	}
	if ps, err := users.UsersPresence(ctx, "a", nil); err != nil || len(ps) != 0 {
		t.Errorf("presence of nobody: %v, %v", ps, err)
	}
}

// TestCallers: the services' view of who calls, and of the actor of an
// event.
func TestCallers(t *testing.T) {
	db := fixture(t, nil, "alice")
	if _, err := userCaller(serverCtx("a")); tidings.ErrorCode(err) != tidings.EForbidden {
		t.Errorf("userCaller with the server key: %v, want forbidden", err)
	}
	if _, err := serverCaller(userCtx("a", "alice")); tidings.ErrorCode(err) != tidings.EForbidden {
		t.Errorf("serverCaller with a user: %v, want forbidden", err)
	}
	if _, err := callerFrom(context.Background()); tidings.ErrorCode(err) != tidings.EUnauthenticated {
		t.Errorf("no caller: %v, want unauthenticated", err)
	}
	err := db.update(context.Background(), func(tx *Tx) error {
		if p, err := tx.actor(tidings.Caller{AppID: "a", UserID: "alice"}); err != nil || p == nil || p.ID != "alice" {
			t.Errorf("actor alice: %+v, %v", p, err)
		}
		if p, err := tx.actor(tidings.Caller{AppID: "a", Server: true}); err != nil || p != nil {
			t.Errorf("actor of the server: %+v, %v; want none", p, err)
		}
		if _, err := tx.actor(tidings.Caller{AppID: "a", UserID: "gone"}); tidings.ErrorCode(err) != tidings.EUnauthenticated {
			t.Errorf("actor of a deleted user: %v, want unauthenticated", err)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}
