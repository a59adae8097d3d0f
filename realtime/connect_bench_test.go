package realtime

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tidings/tidings"
	"github.com/tidings/tidings/internal/cputime"
	"github.com/tidings/tidings/protocol"
	"github.com/tidings/tidings/sqlite"
	"github.com/tidings/tidings/token"
)

// answerCounter is a Transport that counts the answers written to it.
type answerCounter struct {
	answers, errors atomic.Int64
}

func (t *answerCounter) Write(f []byte) bool {
	var fr struct {
		Type  string          `json:"type"`
		Error json.RawMessage `json:"error"`
	}
	if json.Unmarshal(f, &fr) == nil && fr.Type == protocol.TypeAnswer {
		t.answers.Add(1)
		if len(fr.Error) > 0 {
			t.errors.Add(1)
		}
	}
	return true
}
func (t *answerCounter) Close(int, string) {}

// BenchmarkConnect authenticates accounts as a burst of WebSocket
// connects does, 64 at a time, on a single node over SQLite: 1,000 users,
// each in a conversation of their own with an owner (the peer tool's
// idle set). "new" connects a new device each time ("latest": its cursor
// is stored), "known" a device whose cursor is the newest ref. cpu-µs/op
// is the process's CPU time (user and system) per connect, which the
// machine's other load disturbs less than the time per connect.
func BenchmarkConnect(b *testing.B) {
	const users = 1000
	n := NewNode()
	n.Logger = slog.New(slog.DiscardHandler)
	n.MaxConnsPerUser = 1 << 20
	n.CommandRate, n.CommandBurst = 1e9, 1e9
	db := sqlite.NewDB(filepath.Join(b.TempDir(), "tidings.db"))
	db.Logger = n.Logger
	db.Publisher = n
	if err := db.Open(); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { db.Close() })
	apps, usvc, convs, log := sqlite.NewAppService(db), sqlite.NewUserService(db), sqlite.NewConversationService(db), sqlite.NewEventLog(db)
	n.Apps, n.Users, n.Messages, n.Log = apps, usvc, sqlite.NewMessageService(db, 0), log
	if err := n.Open(); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { n.Close() })
	ctx := context.Background()
	app, err := apps.CreateApp(ctx, "a", "")
	if err != nil {
		b.Fatal(err)
	}
	server := tidings.NewContextWithCaller(ctx, tidings.Caller{AppID: "a", Server: true})
	if _, err := usvc.CreateUser(server, &tidings.User{ID: "owner"}); err != nil {
		b.Fatal(err)
	}
	toks := make([]string, users)
	for i := range users {
		id := fmt.Sprint("u", i)
		if _, err := usvc.CreateUser(server, &tidings.User{ID: id}); err != nil {
			b.Fatal(err)
		}
		if _, err := convs.CreateConversation(tidings.NewContextWithCaller(ctx, tidings.Caller{AppID: "a", UserID: "owner"}),
			tidings.NewConversation{ID: "c" + id, Participants: []tidings.NewParticipant{{UserID: id}}}); err != nil {
			b.Fatal(err)
		}
		if toks[i], _, err = token.Mint(app, id, time.Hour, time.Now()); err != nil {
			b.Fatal(err)
		}
	}
	latest, err := log.LastEventSeq(ctx)
	if err != nil {
		b.Fatal(err)
	}
	cs := make([]tidings.Cursor, users)
	for i := range users {
		cs[i] = tidings.Cursor{AppID: "a", UserID: fmt.Sprint("u", i), Device: "known", Seq: latest}
	}
	if err := log.SaveCursors(ctx, cs); err != nil {
		b.Fatal(err)
	}
	frame := func(tok, device, resume string) []byte {
		data, _ := json.Marshal(protocol.AuthArgs{Token: tok, Device: device, ResumeAfter: resume})
		f, _ := json.Marshal(protocol.Frame{Type: protocol.TypeCommand, ID: "1", Command: protocol.CmdAuth, Data: data})
		return f
	}
	var seq atomic.Int64
	for _, bc := range []struct {
		name   string
		device func(i int64) string
		resume string
	}{
		{"new", func(i int64) string { return fmt.Sprint("d", i) }, "latest"},
		{"known", func(int64) string { return "known" }, ""},
	} {
		b.Run(bc.name, func(b *testing.B) {
			var clients []*Client
			var mu sync.Mutex
			tr := &answerCounter{}
			work := make(chan struct{})
			var wg sync.WaitGroup
			cpu0 := cputime.Self()
			b.ResetTimer()
			for range 64 {
				wg.Go(func() {
					for range work {
						i := seq.Add(1)
						c := n.Connect(tr)
						c.HandleWarm(frame(toks[i%users], bc.device(i), bc.resume)) // as the WebSocket transport hands it
						mu.Lock()
						clients = append(clients, c)
						mu.Unlock()
					}
				})
			}
			for range b.N {
				work <- struct{}{}
			}
			close(work)
			wg.Wait()
			n.tasks.Wait() // the replays too, where there are
			b.StopTimer()
			b.ReportMetric(float64((cputime.Self()-cpu0).Microseconds())/float64(b.N), "cpu-µs/op")
			if got := tr.answers.Load(); got != int64(b.N) || tr.errors.Load() > 0 {
				b.Fatalf("%d answers, %d errors, want %d answers and no error", got, tr.errors.Load(), b.N)
			}
			for _, c := range clients {
				c.end(false)
			}
		})
	}
}
