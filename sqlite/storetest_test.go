package sqlite_test

import (
	"log/slog"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

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
		var offset atomic.Int64
		db.Now = func() time.Time { return time.Now().Add(time.Duration(offset.Load())) }
		if err := db.Open(); err != nil {
			t.Fatalf("open: %v", err)
		}
		t.Cleanup(func() { db.Close() })
		const maxFile = 4 << 10
		blobs := disk.NewBlobStore(filepath.Join(dir, "files"))
		files := sqlite.NewFileService(db, blobs, maxFile)
		return storetest.Stores{
			Apps:                  sqlite.NewAppService(db),
			Users:                 sqlite.NewUserService(db),
			Conversations:         sqlite.NewConversationService(db),
			Messages:              sqlite.NewMessageService(db, 0),
			EventLog:              sqlite.NewEventLog(db),
			Push:                  sqlite.NewPushService(db),
			Files:                 files,
			MaxFileBytes:          maxFile,
			UploadQuotas:          &files.UploadQuotas,
			Advance:               func(d time.Duration) { offset.Add(int64(d)) },
			RemoveUnattachedFiles: files.RemoveUnattached,
			Blobs:                 blobs,
			Webhooks:              sqlite.NewWebhookService(db),
			WebhookStore:          sqlite.NewWebhookService(db),
			BeforeSend:            sqlite.NewBeforeSendService(db),
			BeforeSendStore:       sqlite.NewBeforeSendService(db),
		}
	})
}
