package http_test

import (
	"context"
	"log/slog"
	"path/filepath"
	"testing"
	"time"

	"github.com/tidings/tidings"
	"github.com/tidings/tidings/disk"
	tidingshttp "github.com/tidings/tidings/http"
	"github.com/tidings/tidings/ratelimit"
	"github.com/tidings/tidings/sqlite"
)

// stackOptions shape the server startStack runs.
type stackOptions struct {
	logger       *slog.Logger
	synchronous  string // the store's synchronous mode; "" for FULL, as served
	maxFileBytes int64  // upload limit; 0 for the default
	origins      []string
	files        func(*sqlite.FileService) // sets the file service up
	server       func(*tidingshttp.Server) // sets the server up before it opens
	limits       *ratelimit.Limiter        // nil: no rate limits
}

// startStack runs the whole API over a real SQLite store in a temporary
// directory, listening on 127.0.0.1, until the test ends.
func startStack(tb testing.TB, o stackOptions) (*tidingshttp.Server, *sqlite.DB) {
	tb.Helper()
	dir := tb.TempDir()
	if o.logger == nil {
		o.logger = slog.New(slog.DiscardHandler)
	}
	db := sqlite.NewDB(filepath.Join(dir, "tidings.db"))
	db.Logger = o.logger
	if o.synchronous != "" {
		db.Synchronous = o.synchronous
	}
	if err := db.Open(); err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { db.Close() })

	s := tidingshttp.NewServer()
	s.Addr = "127.0.0.1:0"
	s.Logger = o.logger
	s.Apps = sqlite.NewAppService(db)
	s.Users = sqlite.NewUserService(db)
	s.Conversations = sqlite.NewConversationService(db)
	s.Messages = sqlite.NewMessageService(db, tidings.DefaultMessageSize)
	maxFile := o.maxFileBytes
	if maxFile == 0 {
		maxFile = s.MaxFileBytes
	}
	files := sqlite.NewFileService(db, disk.NewBlobStore(filepath.Join(dir, "blobs")), maxFile)
	if o.files != nil {
		o.files(files)
	}
	s.Files = files
	s.MaxFileBytes = maxFile
	s.Ready = db.Ping
	s.AllowedOrigins = o.origins
	if o.server != nil {
		o.server(s)
	}
	s.Limits = o.limits
	if err := s.Open(); err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		s.Shutdown(ctx)
	})
	return s, db
}
