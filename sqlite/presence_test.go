package sqlite_test

import (
	"context"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/tidings/tidings"
)

func TestLastSeenOnlyMovesForwardAndStaysInItsApp(t *testing.T) {
	e := openDB(t, filepath.Join(t.TempDir(), "t.db"))
	ctx := context.Background()
	for _, app := range []string{"a", "b"} {
		if _, err := e.apps.CreateApp(ctx, app, ""); err != nil {
			t.Fatal(err)
		}
	}
	e.mkUsers(t, "a", "alice", "bob")
	e.mkUsers(t, "b", "alice")
	t1 := time.Date(2026, 11, 23, 9, 0, 0, 123456000, time.UTC)
	t0 := t1.Add(-time.Hour)
	if err := e.users.SaveLastSeen(ctx, []tidings.LastSeen{
		{AppID: "a", UserID: "alice", At: t1}, {AppID: "a", UserID: "nobody", At: t1},
	}); err != nil {
		t.Fatal(err)
	}
	// An earlier time (from a node that stored late) does not move it back.
	if err := e.users.SaveLastSeen(ctx, []tidings.LastSeen{{AppID: "a", UserID: "alice", At: t0}}); err != nil {
		t.Fatal(err)
	}
	ps, err := e.users.UsersPresence(ctx, "a", []string{"bob", "alice", "nobody"})
	if err != nil {
		t.Fatal(err)
	}
	slices.SortFunc(ps, func(x, y tidings.UserPresence) int { return strings.Compare(x.UserID, y.UserID) })
	if len(ps) != 2 || ps[0].UserID != "alice" || !ps[0].LastSeenAt.Equal(t1) || ps[1].UserID != "bob" || !ps[1].LastSeenAt.IsZero() {
		t.Fatalf("UsersPresence = %+v, want alice seen at %v, bob never", ps, t1)
	}
	// The other app's alice was never seen.
	if ps, err := e.users.UsersPresence(ctx, "b", []string{"alice", "bob"}); err != nil || len(ps) != 1 || !ps[0].LastSeenAt.IsZero() {
		t.Fatalf("app b: %+v, %v", ps, err)
	}
	// The profile tells it, to others only while not hidden.
	if u, err := e.users.FindUserByID(user("a", "bob"), "alice"); err != nil || u.LastSeenAt == nil || !u.LastSeenAt.Equal(t1) || u.PresenceHidden {
		t.Fatalf("bob reads alice: %+v, %v", u, err)
	}
	hide := true
	if _, err := e.users.UpdateUser(user("a", "alice"), "alice", tidings.UserUpdate{PresenceHidden: &hide}); err != nil {
		t.Fatal(err)
	}
	if u, _ := e.users.FindUserByID(user("a", "bob"), "alice"); u.LastSeenAt != nil || !u.PresenceHidden {
		t.Fatalf("bob reads hidden alice: %+v", u)
	}
	for _, ctx := range []context.Context{user("a", "alice"), server("a")} {
		if u, _ := e.users.FindUserByID(ctx, "alice"); u.LastSeenAt == nil {
			t.Fatalf("alice and the server still see it: %+v", u)
		}
	}
	if ps, _ := e.users.UsersPresence(ctx, "a", []string{"alice"}); len(ps) != 1 || !ps[0].Hidden {
		t.Fatalf("UsersPresence of hidden alice: %+v", ps)
	}
}
