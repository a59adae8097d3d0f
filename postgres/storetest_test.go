package postgres

import (
	"log/slog"
	"sync/atomic"
	"testing"
	"time"

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
		var offset atomic.Int64
		db.Now = func() time.Time { return time.Now().Add(time.Duration(offset.Load())) }
		if err := db.Open(); err != nil {
			t.Fatalf("open: %v", err)
		}
		t.Cleanup(func() { db.Close() })
		const maxFile = 4 << 10
		blobs := disk.NewBlobStore(t.TempDir())
		files := NewFileService(db, blobs, maxFile)
		return storetest.Stores{
			Apps:                  NewAppService(db),
			Users:                 NewUserService(db),
			Conversations:         NewConversationService(db),
			Messages:              NewMessageService(db, 0),
			EventLog:              NewEventLog(db),
			Files:                 files,
			MaxFileBytes:          maxFile,
			UploadQuotas:          &files.UploadQuotas,
			Advance:               func(d time.Duration) { offset.Add(int64(d)) },
			RemoveUnattachedFiles: files.RemoveUnattached,
			Blobs:                 blobs,
			Webhooks:              NewWebhookService(db),
			WebhookStore:          NewWebhookService(db),
			BeforeSend:            NewBeforeSendService(db),
			BeforeSendStore:       NewBeforeSendService(db),
			Push:                  NewPushService(db),
		}
	})
}
