package postgres

import (
	"log/slog"
	"testing"

	"github.com/tidings/tidings"
	"github.com/tidings/tidings/storetest"
)

// TestConformance runs the tests of the store conformance suite that the
// services built so far cover (apps, users, cursors). The whole suite
// (storetest.Run) needs conversations and messages too.
func TestConformance(t *testing.T) {
	newStores := func(t *testing.T, pub tidings.EventPublisher) storetest.Stores {
		db := NewDB(freshDSN(t))
		db.Publisher = pub
		db.Logger = slog.New(slog.DiscardHandler) // migrations are logged at each open
		if err := db.Open(); err != nil {
			t.Fatalf("open: %v", err)
		}
		t.Cleanup(func() { db.Close() })
		return storetest.Stores{
			Apps:     NewAppService(db),
			Users:    NewUserService(db),
			EventLog: NewEventLog(db),
		}
	}
	for _, tc := range []struct {
		name string
		run  func(*testing.T, storetest.Factory)
	}{
		{"Apps", storetest.TestApps},
		{"Users", storetest.TestUsers},
		{"Cursors", storetest.TestCursors},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			tc.run(t, newStores)
		})
	}
}
