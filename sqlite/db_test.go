package sqlite_test

import (
	"context"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/tidings/tidings"
	"github.com/tidings/tidings/sqlite"
)

// recorder is an EventPublisher that keeps what it is given.
type recorder struct {
	mu     sync.Mutex
	events []*tidings.Event
}

func (r *recorder) Publish(evs ...*tidings.Event) {
	r.mu.Lock()
	r.events = append(r.events, evs...)
	r.mu.Unlock()
}

// names returns the names of the events published so far and forgets them.
func (r *recorder) take() []*tidings.Event {
	r.mu.Lock()
	defer r.mu.Unlock()
	evs := r.events
	r.events = nil
	return evs
}

func names(evs []*tidings.Event) []string {
	var ns []string
	for _, e := range evs {
		ns = append(ns, e.Name)
	}
	return ns
}

// env is a store with its services, an app "a" and an app "b".
type env struct {
	db       *sqlite.DB
	path     string
	events   *recorder
	apps     *sqlite.AppService
	users    *sqlite.UserService
	convs    *sqlite.ConversationService
	messages *sqlite.MessageService
}

func openDB(t testing.TB, path string) *env { return openDBWith(t, path, nil) }

// openDBWith opens the database at path after letting configure set it up.
func openDBWith(t testing.TB, path string, configure func(*sqlite.DB)) *env {
	t.Helper()
	db := sqlite.NewDB(path)
	if configure != nil {
		configure(db)
	}
	rec := &recorder{}
	db.Publisher = rec
	if err := db.Open(); err != nil {
		t.Fatalf("open: %v", err)
	}
	t.Cleanup(func() { db.Close() })
	return &env{db: db, path: path, events: rec,
		apps: sqlite.NewAppService(db), users: sqlite.NewUserService(db),
		convs: sqlite.NewConversationService(db), messages: sqlite.NewMessageService(db, 0)}
}

func newEnv(t testing.TB) *env { return newEnvWith(t, nil) }

// newEnvWith is newEnv on a database configure sets up first.
func newEnvWith(t testing.TB, configure func(*sqlite.DB)) *env {
	t.Helper()
	e := openDBWith(t, filepath.Join(t.TempDir(), "tidings.db"), configure)
	for _, app := range []string{"a", "b"} {
		if _, err := e.apps.CreateApp(context.Background(), app, ""); err != nil {
			t.Fatal(err)
		}
	}
	return e
}

// newQuietEnv is newEnv on a database that writes the sends' marks and
// moves the journal's messages only when a job or a reader asks: not on
// its own once due, nor when the writer is idle for a second on a busy
// machine, so that a test sees in the file what its own calls wrote.
func newQuietEnv(t testing.TB) *env {
	return newEnvWith(t, func(db *sqlite.DB) {
		sqlite.SetMarkFlush(db, time.Hour, time.Hour, 128)
		sqlite.SetMoveDelay(db, time.Hour)
	})
}

func server(app string) context.Context {
	return tidings.NewContextWithCaller(context.Background(), tidings.Caller{AppID: app, Server: true})
}

func user(app, id string) context.Context {
	return tidings.NewContextWithCaller(context.Background(), tidings.Caller{AppID: app, UserID: id})
}

// mkUsers creates users in app.
func (e *env) mkUsers(t testing.TB, app string, ids ...string) {
	t.Helper()
	for _, id := range ids {
		if _, err := e.users.CreateUser(server(app), &tidings.User{ID: id}); err != nil {
			t.Fatalf("create user %s: %v", id, err)
		}
	}
}

// wantCode fails unless err carries the code.
func wantCode(t testing.TB, err error, code string) {
	t.Helper()
	if got := tidings.ErrorCode(err); got != code {
		t.Fatalf("error code = %q (%v), want %q", got, err, code)
	}
}

func must[T any](t testing.TB) func(T, error) T {
	return func(v T, err error) T {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
}

func text(s string) []tidings.Part { return []tidings.Part{{Type: "text/plain", Data: s}} }

func TestReopenKeepsDataAndMigratesOnce(t *testing.T) {
	path := filepath.Join(t.TempDir(), "tidings.db")
	e := openDB(t, path)
	app := must[*tidings.App](t)(e.apps.CreateApp(context.Background(), "", "shop"))
	if err := e.db.Close(); err != nil {
		t.Fatal(err)
	}
	e2 := openDB(t, path)
	got := must[*tidings.App](t)(e2.apps.FindAppByID(context.Background(), app.ID))
	if got.ServerKey != "" || got.Name != "shop" || got.SigningSecret != app.SigningSecret {
		t.Fatalf("reopened app = %+v, want %+v", got, app)
	}
	byKey := must[*tidings.App](t)(e2.apps.FindAppByServerKey(context.Background(), app.ServerKey))
	if byKey.ID != app.ID {
		t.Fatalf("found app %q by key, want %q", byKey.ID, app.ID)
	}
}

func TestWritesAfterCloseFail(t *testing.T) {
	e := newEnv(t)
	e.db.Close()
	_, err := e.apps.CreateApp(context.Background(), "late", "")
	wantCode(t, err, tidings.EUnavailable)
}

func TestAppKeys(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	_, err := e.apps.CreateApp(ctx, "a", "")
	wantCode(t, err, tidings.EConflict)
	old := must[*tidings.App](t)(e.apps.CreateApp(ctx, "c", ""))
	rotated := must[*tidings.App](t)(e.apps.RotateServerKey(ctx, "c"))
	if rotated.ServerKey == old.ServerKey {
		t.Fatal("rotation kept the key")
	}
	_, err = e.apps.FindAppByServerKey(ctx, old.ServerKey)
	wantCode(t, err, tidings.EUnauthenticated)
	_, err = e.apps.RotateServerKey(ctx, "nope")
	wantCode(t, err, tidings.ENotFound)
	apps := must[[]*tidings.App](t)(e.apps.ListApps(ctx))
	if len(apps) != 3 {
		t.Fatalf("listed %d apps, want 3", len(apps))
	}
}

// pageSizeAndWAL reads the page size and the WAL mode from a database
// file's header (bytes 16–17, big-endian; 18–19 are 2 in WAL mode).
func pageSizeAndWAL(t *testing.T, path string) (int, bool) {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if len(data) < 100 {
		t.Fatalf("%s: %d bytes, no header", path, len(data))
	}
	size := int(data[16])<<8 | int(data[17])
	if size == 1 {
		size = 65536
	}
	return size, data[18] == 2 && data[19] == 2
}

func TestPageSizeOfANewDatabaseOnly(t *testing.T) {
	path := filepath.Join(t.TempDir(), "tidings.db")
	e := openDBWith(t, path, func(db *sqlite.DB) { db.PageSize = 1024 })
	app := must[*tidings.App](t)(e.apps.CreateApp(context.Background(), "", "shop"))
	if err := e.db.Close(); err != nil {
		t.Fatal(err)
	}
	if size, wal := pageSizeAndWAL(t, path); size != 1024 || !wal {
		t.Fatalf("new database: page size %d, WAL %v; want 1024, WAL", size, wal)
	}
	// A database that exists keeps its page size.
	e = openDBWith(t, path, func(db *sqlite.DB) { db.PageSize = 2048 })
	if _, err := e.apps.FindAppByID(context.Background(), app.ID); err != nil {
		t.Fatal(err)
	}
	if err := e.db.Close(); err != nil {
		t.Fatal(err)
	}
	if size, wal := pageSizeAndWAL(t, path); size != 1024 || !wal {
		t.Fatalf("reopened: page size %d, WAL %v; want 1024, WAL", size, wal)
	}
	// Without PageSize, SQLite's default.
	other := filepath.Join(t.TempDir(), "default.db")
	if err := openDB(t, other).db.Close(); err != nil {
		t.Fatal(err)
	}
	if size, wal := pageSizeAndWAL(t, other); size != 4096 || !wal {
		t.Fatalf("default: page size %d, WAL %v; want 4096, WAL", size, wal)
	}
	db := sqlite.NewDB(filepath.Join(t.TempDir(), "bad.db"))
	db.PageSize = 1000
	if err := db.Open(); err == nil {
		db.Close()
		t.Fatal("opened with a page size of 1000")
	}
}
