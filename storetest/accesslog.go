package storetest

import (
	"context"
	"slices"
	"testing"

	"github.com/tidings/tidings"
)

// TestAccessLog: the store logs every user whose access may have ended
// (tidings.AccessLog), whoever changed them: deactivated, tokens revoked,
// deleted (as their app, with no trace of them), in the order of the
// changes, after the head taken before
// them; a profile change or a new user is not logged. The realtime
// node's access check relies on it to end the sessions of those users
// without reading every user of its sessions each time.
func TestAccessLog(t *testing.T, newStores Factory) {
	f := newFixture(t, newStores)
	log, ok := f.Users.(tidings.AccessLog)
	if !ok {
		t.Fatalf("the store's UserService (%T) is not a tidings.AccessLog", f.Users)
	}
	ctx := context.Background()
	f.mkUsers("a", "alice", "bob", "dave")
	f.mkUsers("b", "alice")
	head, err := log.AccessLogHead(ctx)
	if err != nil {
		t.Fatal(err)
	}
	changes := func(after int64, limit int) ([]tidings.UserRef, int64) {
		t.Helper()
		users, next, complete, err := log.AccessChangesSince(ctx, after, limit)
		if err != nil {
			t.Fatal(err)
		}
		if !complete {
			t.Fatalf("the log after %d is not complete", after)
		}
		return users, next
	}
	if users, next := changes(head, 100); len(users) != 0 || next != head {
		t.Fatalf("nothing changed: %v, next %d (head %d)", users, next, head)
	}

	name := "Robert"
	must[*tidings.User](t)(f.Users.UpdateUser(server("a"), "bob", tidings.UserUpdate{DisplayName: &name}))
	f.mkUsers("a", "erin")
	must[*tidings.User](t)(f.Users.DeactivateUser(server("a"), "bob"))
	must[*tidings.User](t)(f.Users.RevokeTokens(server("b"), "alice"))
	must[*tidings.User](t)(f.Users.RevokeTokens(server("a"), "dave"))
	if err := f.Users.DeleteUser(server("a"), "dave", tidings.AnonymizeMessages); err != nil {
		t.Fatal(err)
	}
	users, next := changes(head, 100)
	// A deleted user leaves no trace: their app stands for them.
	want := []tidings.UserRef{{AppID: "a", UserID: "bob"}, {AppID: "b", UserID: "alice"}, {AppID: "a"}}
	if !slices.Equal(users, want) {
		t.Errorf("logged %v, want %v", users, want)
	}
	if h, err := log.AccessLogHead(ctx); err != nil || h != next || next <= head {
		t.Errorf("head %d (%v), next %d, head before %d", h, err, next, head)
	}
	if users, again := changes(next, 100); len(users) != 0 || again != next {
		t.Errorf("after the last entry: %v, next %d, want none, %d", users, again, next)
	}

	// Pages: limit entries at a time, from where the last one ended.
	first, mid := changes(head, 2)
	rest, end := changes(mid, 2)
	if got := append(first, rest...); !slices.Equal(got, want) || end != next {
		t.Errorf("in pages of 2: %v, ending at %d; want %v, %d", got, end, want, next)
	}

	// A point this log never reached (the database was made again): the
	// caller must read all its users.
	if _, _, complete, err := log.AccessChangesSince(ctx, next+1000, 100); err != nil || complete {
		t.Errorf("after a point beyond the head: complete %v (%v), want false", complete, err)
	}
}
