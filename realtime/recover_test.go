package realtime

import (
	"context"
	"encoding/json"
	"log/slog"
	"testing"
	"time"

	"github.com/tidings/tidings"
	"github.com/tidings/tidings/protocol"
	"github.com/tidings/tidings/token"
)

type oneApp struct {
	tidings.AppService // not called
	app                *tidings.App
}

func (a oneApp) FindAppByID(context.Context, string) (*tidings.App, error) { return a.app, nil }

type panickingUsers struct{ tidings.UserService }

// noCursors is an EventLog that stores no cursors (the node saves them
// every second).
type noCursors struct{ tidings.EventLog }

func (noCursors) SaveCursors(context.Context, []tidings.Cursor) error { return nil }

func (panickingUsers) FindUserByID(context.Context, string) (*tidings.User, error) {
	panic("a bug in the store")
}

// A bug that panics while an account authenticates fails that command,
// not the whole server.
func TestPanicInAuthIsAnsweredNotFatal(t *testing.T) {
	app := &tidings.App{ID: "a", SigningSecret: "a secret long enough for HS256 tokens"}
	node := NewNode()
	node.Apps, node.Users, node.Log, node.Logger = oneApp{app: app}, panickingUsers{}, noCursors{}, slog.New(slog.DiscardHandler)
	if err := node.Open(); err != nil {
		t.Fatal(err)
	}
	defer node.Close()
	tok, _, err := token.Mint(app, "alice", time.Hour, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	tr := &recordingTransport{}
	c := node.Connect(tr)
	defer c.Gone()
	auth, _ := json.Marshal(protocol.Frame{Type: protocol.TypeCommand, ID: "1", Command: protocol.CmdAuth,
		Data: json.RawMessage(`{"token":"` + tok + `"}`)})
	c.Handle(auth)

	tr.mu.Lock()
	defer tr.mu.Unlock()
	if len(tr.frames) != 1 {
		t.Fatalf("%d frames written, want the answer", len(tr.frames))
	}
	var f protocol.Frame
	if err := json.Unmarshal(tr.frames[0], &f); err != nil || f.ID != "1" || f.Error == nil || f.Error.Code != tidings.EInternal {
		t.Fatalf("answer %s (%v), want an internal error for command 1", tr.frames[0], err)
	}
}
