package postgres

import (
	"context"
	"io"
	"log/slog"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tidings/tidings"
	"github.com/tidings/tidings/disk"
)

// fileEnv is a store whose clock the test moves, with app a, users alice
// and bob, and a conversation of theirs.
type fileEnv struct {
	db     *DB
	offset *atomic.Int64
	conv   string
	msgs   *MessageService
}

func newFileEnv(t *testing.T) *fileEnv {
	t.Helper()
	var offset atomic.Int64
	db := NewDB(freshDSN(t))
	db.Logger = slog.New(slog.DiscardHandler)
	db.Now = func() time.Time { return time.Now().Add(time.Duration(offset.Load())) }
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
	return &fileEnv{db: db, offset: &offset, conv: c.ID, msgs: NewMessageService(db, 0)}
}

func wantCode(t *testing.T, err error, code string) {
	t.Helper()
	if got := tidings.ErrorCode(err); got != code {
		t.Fatalf("error %v (%s), want %s", err, got, code)
	}
}

// TestUnattachedFilesAreRemovedAfterGrace: files no message refers to are
// removed, content included, once their grace period is over; attached
// ones stay.
func TestUnattachedFilesAreRemovedAfterGrace(t *testing.T) {
	e := newFileEnv(t)
	blobs := disk.NewBlobStore(t.TempDir())
	files := NewFileService(e.db, blobs, 1000)
	ctx := context.Background()
	up := func() *tidings.File {
		t.Helper()
		f, err := files.CreateFile(userCtx("a", "alice"), e.conv, "f.txt", "text/plain", strings.NewReader("hello"))
		if err != nil {
			t.Fatal(err)
		}
		return f
	}
	send := func(who string, parts []tidings.Part) *tidings.Message {
		t.Helper()
		m, _, err := e.msgs.SendMessage(userCtx("a", who), e.conv, tidings.NewMessage{Parts: parts})
		if err != nil {
			t.Fatal(err)
		}
		return m
	}
	kept, edited, orphan, late := up(), up(), up(), up()
	send("alice", []tidings.Part{{Type: "text/plain", FileID: kept.ID}})
	other := send("bob", []tidings.Part{{Type: "text/plain", Data: "other"}})
	if _, err := e.msgs.EditMessage(userCtx("a", "bob"), e.conv, other.ID, tidings.MessageEdit{Parts: []tidings.Part{{Type: "text/plain", FileID: edited.ID}}}); err != nil {
		t.Fatal(err)
	}

	// Within the grace period nothing goes.
	e.offset.Store(int64(23 * time.Hour))
	if n, err := files.RemoveUnattached(ctx, 24*time.Hour); err != nil || n != 0 {
		t.Fatalf("removed %d files within the grace period (%v)", n, err)
	}
	e.offset.Store(int64(25 * time.Hour))
	late2 := up() // uploaded now: in its grace period
	if n, err := files.RemoveUnattached(ctx, 24*time.Hour); err != nil || n != 2 {
		t.Fatalf("removed %d files (%v); want the 2 never attached", n, err)
	}
	for _, f := range []*tidings.File{orphan, late} {
		if _, _, err := files.OpenFile(userCtx("a", "bob"), e.conv, f.ID); tidings.ErrorCode(err) != tidings.ENotFound {
			t.Errorf("unattached file still there: %v", err)
		}
		if _, err := blobs.Open(ctx, tidings.BlobKey("a", e.conv, f.ID)); tidings.ErrorCode(err) != tidings.ENotFound {
			t.Errorf("content of an unattached file still there: %v", err)
		}
	}
	for _, f := range []*tidings.File{kept, edited, late2} {
		_, rc, err := files.OpenFile(userCtx("a", "bob"), e.conv, f.ID)
		if err != nil {
			t.Fatalf("attached or recent file removed: %v", err)
		}
		b, _ := io.ReadAll(rc)
		rc.Close()
		if string(b) != "hello" {
			t.Errorf("file content %q", b)
		}
	}
	// A removed file can no longer be attached.
	_, _, err := e.msgs.SendMessage(userCtx("a", "alice"), e.conv, tidings.NewMessage{Parts: []tidings.Part{{Type: "text/plain", FileID: orphan.ID}}})
	wantCode(t, err, tidings.EInvalid)
}
