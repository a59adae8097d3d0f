package realtime_test

import (
	"context"
	"encoding/json"
	"log/slog"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/tidings/tidings"
	"github.com/tidings/tidings/protocol"
	"github.com/tidings/tidings/realtime"
	"github.com/tidings/tidings/sqlite"
	"github.com/tidings/tidings/token"
)

// frameRecorder is a realtime.Transport that keeps what the node writes.
type frameRecorder struct {
	mu     sync.Mutex
	frames [][]byte
	code   int // the close code, 0 while open
}

func (r *frameRecorder) Write(f []byte) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.frames = append(r.frames, f)
	return true
}

func (r *frameRecorder) Close(code int, _ string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.code = code
}

// fuzzNode is a node over a real store holding the app a, the users alice
// and bob and their conversation c.
func fuzzNode(f *testing.F) (*realtime.Node, string) {
	dir := f.TempDir()
	logger := slog.New(slog.DiscardHandler)
	db := sqlite.NewDB(filepath.Join(dir, "tidings.db"))
	db.Logger = logger
	db.Synchronous = "NORMAL" // durability is not what is tested
	n := realtime.NewNode()
	db.Publisher = n // before Open, as documented
	if err := db.Open(); err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { db.Close() })
	apps, users := sqlite.NewAppService(db), sqlite.NewUserService(db)
	n.Apps, n.Users, n.Messages, n.Log, n.Logger = apps, users, sqlite.NewMessageService(db, 0), sqlite.NewEventLog(db), logger
	if err := n.Open(); err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { n.Close() })

	ctx := context.Background()
	app, err := apps.CreateApp(ctx, "a", "")
	if err != nil {
		f.Fatal(err)
	}
	server := tidings.NewContextWithCaller(ctx, tidings.Caller{AppID: "a", Server: true})
	for _, id := range []string{"alice", "bob"} {
		if _, err := users.CreateUser(server, &tidings.User{ID: id}); err != nil {
			f.Fatal(err)
		}
	}
	alice := tidings.NewContextWithCaller(ctx, tidings.Caller{AppID: "a", UserID: "alice"})
	if _, err := sqlite.NewConversationService(db).CreateConversation(alice, tidings.NewConversation{
		ID: "c", Participants: []tidings.NewParticipant{{UserID: "bob"}}}); err != nil {
		f.Fatal(err)
	}
	tok, _, err := token.Mint(app, "alice", time.Hour, time.Now())
	if err != nil {
		f.Fatal(err)
	}
	return n, tok
}

// Whatever a client sends after authenticating, the server answers every
// command that has an id, writes only valid JSON, and closes the
// connection, if it does, with a documented code. No input panics it.
func FuzzClientFrames(f *testing.F) {
	for _, seed := range []string{
		`{"type":"command","id":"1","command":"ping"}`,
		`{"type":"command","id":"2","command":"message.send","data":{"conversationId":"c","parts":[{"type":"text/plain","data":"hi"}]}}`,
		`{"type":"command","id":"3","command":"message.send","data":{"conversationId":"c","parts":[{"type":"text/plain","data":"hi"}],"metadata":{"k":"v"},"clientId":"x"}}`,
		`{"type":"command","id":"4","command":"message.read","data":{"conversationId":"c","seq":1}}`,
		`{"type":"command","id":"5","command":"typing.start","data":{"conversationId":"c"}}`,
		`{"type":"command","id":"6","command":"presence.get","data":{"conversationId":"nope"}}`,
		`{"type":"command","id":"7","command":"logout"}`,
		`{"type":"command","id":"8","command":"auth","account":"work","data":{"token":"x"}}`,
		`{"type":"command","id":"9","command":"nope","data":[1,2]}`,
		`{"type":"reply","ref":"1"}`,
		`{"type":"reply","ref":"-5"}`,
		`{"type":"update"}`,
		`{"type":"command"}`,
		`not json`,
		"{\"type\":\"command\",\"id\":\"10\",\"command\":\"message.send\",\"data\":{\"conversationId\":\"c\",\"parts\":[{\"type\":\"text/plain\",\"data\":\"x\"}],\"metadata\":{\"k\":\"\xff\"}}}",
	} {
		f.Add([]byte(seed))
	}
	node, tok := fuzzNode(f)
	auth, _ := json.Marshal(protocol.Frame{Type: protocol.TypeCommand, ID: "auth", Command: protocol.CmdAuth,
		Data: json.RawMessage(`{"token":"` + tok + `","device":"fuzz"}`)})
	f.Fuzz(func(t *testing.T, data []byte) {
		rec := &frameRecorder{}
		c := node.Connect(rec)
		defer c.Gone()
		c.Handle(auth)
		c.Handle(data)
		c.WaitSends() // a message.send is answered once committed, after Handle returns

		rec.mu.Lock()
		frames, code := slices.Clone(rec.frames), rec.code
		rec.mu.Unlock()
		answered := map[string]bool{}
		for _, fr := range frames {
			var out protocol.Frame
			if !json.Valid(fr) || json.Unmarshal(fr, &out) != nil {
				t.Fatalf("the server wrote a frame that is not valid JSON: %q", fr)
			}
			switch out.Type {
			case protocol.TypeAnswer:
				answered[out.ID] = true
			case protocol.TypeUpdate:
			default:
				t.Fatalf("the server wrote a frame of type %q: %s", out.Type, fr)
			}
		}
		if !answered["auth"] {
			t.Fatalf("the auth command was not answered: %q", frames)
		}
		if code != 0 && code != protocol.CloseNormal && code != protocol.CloseBadFrame {
			t.Fatalf("closed with %d, not a code a client frame can cause", code)
		}
		var in protocol.Frame
		if json.Unmarshal(data, &in) == nil && in.Type == protocol.TypeCommand && in.ID != "" && in.ID != "auth" &&
			code != protocol.CloseBadFrame && !answered[in.ID] {
			t.Fatalf("command %q (id %q) was not answered; frames %q", in.Command, in.ID, frames)
		}
	})
}
