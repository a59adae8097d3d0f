package postgres

import (
	"log/slog"
	"testing"

	"github.com/tidings/tidings"
	"github.com/tidings/tidings/disk"
	"github.com/tidings/tidings/storetest"
)

// TestConformance runs the store conformance suite on PostgreSQL, each
// test on a database of its own.
func TestConformance(t *testing.T) {
	storetest.Run(t, func(t *testing.T, pub tidings.EventPublisher) storetest.Stores {
		db := NewDB(freshDSN(t))
		db.Publisher = pub
		db.Logger = slog.New(slog.DiscardHandler) // migrations are logged at each open
		if err := db.Open(); err != nil {
			t.Fatalf("open: %v", err)
		}
		t.Cleanup(func() { db.Close() })
		const maxFile = 4 << 10
		return storetest.Stores{
			Apps:            NewAppService(db),
			Users:           NewUserService(db),
			Conversations:   NewConversationService(db),
			Messages:        NewMessageService(db, 0),
			EventLog:        NewEventLog(db),
			Files:           NewFileService(db, disk.NewBlobStore(t.TempDir()), maxFile),
			MaxFileBytes:    maxFile,
			Webhooks:        NewWebhookService(db),
			WebhookStore:    NewWebhookService(db),
			BeforeSend:      NewBeforeSendService(db),
			BeforeSendStore: NewBeforeSendService(db),
			Push:            NewPushService(db),
		}
	})
}
