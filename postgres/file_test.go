package postgres

import (
	"context"
	"log/slog"
	"testing"

	"github.com/tidings/tidings"
)

// fileEnv is a store with app a, users alice and bob, and a
// conversation of theirs.
type fileEnv struct {
	db   *DB
	conv string
}

func newFileEnv(t *testing.T) *fileEnv {
	t.Helper()
	db := NewDB(freshDSN(t))
	db.Logger = slog.New(slog.DiscardHandler)
	if err := db.Open(); err != nil {
		t.Fatalf("open: %v", err)
	}
	t.Cleanup(func() { db.Close() })
	ctx := context.Background()
	if _, err := NewAppService(db).CreateApp(ctx, "a", ""); err != nil {
		t.Fatal(err)
	}
	server := tidings.NewContextWithCaller(ctx, tidings.Caller{AppID: "a", Server: true})
	for _, u := range []string{"alice", "bob"} {
		if _, err := NewUserService(db).CreateUser(server, &tidings.User{ID: u}); err != nil {
			t.Fatal(err)
		}
	}
	c, err := NewConversationService(db).CreateConversation(userCtx("a", "alice"),
		tidings.NewConversation{Participants: []tidings.NewParticipant{{UserID: "bob"}}})
	if err != nil {
		t.Fatal(err)
	}
	return &fileEnv{db: db, conv: c.ID}
}

func wantCode(t *testing.T, err error, code string) {
	t.Helper()
	if got := tidings.ErrorCode(err); got != code {
		t.Fatalf("error %v (%s), want %s", err, got, code)
	}
}
