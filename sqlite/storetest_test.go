package sqlite_test

import (
	"log/slog"
	"path/filepath"
	"testing"

	"github.com/tidings/tidings"
	"github.com/tidings/tidings/disk"
	"github.com/tidings/tidings/sqlite"
	"github.com/tidings/tidings/storetest"
)

// TestConformance runs the store conformance suite on SQLite.
func TestConformance(t *testing.T) {
	storetest.Run(t, func(t *testing.T, pub tidings.EventPublisher) storetest.Stores {
		dir := t.TempDir()
		db := sqlite.NewDB(filepath.Join(dir, "tidings.db"))
		db.Publisher = pub
		db.Logger = slog.New(slog.DiscardHandler) // migrations are logged at each open
		if err := db.Open(); err != nil {
			t.Fatalf("open: %v", err)
		}
		t.Cleanup(func() { db.Close() })
		const maxFile = 4 << 10
		return storetest.Stores{
			Apps:            sqlite.NewAppService(db),
			Users:           sqlite.NewUserService(db),
			Conversations:   sqlite.NewConversationService(db),
			Messages:        sqlite.NewMessageService(db, 0),
			EventLog:        sqlite.NewEventLog(db),
			Push:            sqlite.NewPushService(db),
			Files:           sqlite.NewFileService(db, disk.NewBlobStore(filepath.Join(dir, "files")), maxFile),
			MaxFileBytes:    maxFile,
			Webhooks:        sqlite.NewWebhookService(db),
			WebhookStore:    sqlite.NewWebhookService(db),
			BeforeSend:      sqlite.NewBeforeSendService(db),
			BeforeSendStore: sqlite.NewBeforeSendService(db),
		}
	})
}
