package realtime

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/tidings/tidings"
	"github.com/tidings/tidings/protocol"
)

// gatedMessages queues each send in the order it comes, then waits for
// release before answering: a store whose commit has not come yet.
type gatedMessages struct {
	tidings.MessageService
	release chan struct{}
	mu      sync.Mutex
	queued  []string // client ids, in queue order
}

func (g *gatedMessages) SendMessage(ctx context.Context, conv string, nm tidings.NewMessage) (*tidings.Message, bool, error) {
	g.mu.Lock()
	g.queued = append(g.queued, nm.ClientID)
	seq := int64(len(g.queued))
	g.mu.Unlock()
	tidings.Queued(ctx)
	<-g.release
	return &tidings.Message{ID: nm.ClientID, ConversationID: conv, Seq: seq, ClientID: nm.ClientID}, true, nil
}

// A connection's sends do not wait for each other's commit: each command
// is read as soon as the one before is queued in the store, so that they
// commit together, in the order sent, and each answer names its command.
func TestSendsOfAConnectionArePipelinedInOrder(t *testing.T) {
	node := NewNode()
	node.ctx, node.cancel = context.WithCancel(context.Background())
	defer node.cancel()
	gate := &gatedMessages{release: make(chan struct{})}
	node.Messages = gate
	tr := &recordingTransport{}
	c := &Client{node: node, t: tr, tokens: 100, refilled: node.Now(),
		sends: make(chan struct{}, maxSendsInFlight)}
	c.accounts.set(&Session{client: c, account: "default", app: "a", user: "u"})

	const n = 5
	handled := make(chan struct{})
	go func() {
		defer close(handled)
		for i := range n {
			data, _ := json.Marshal(protocol.SendArgs{ConversationID: "c", ClientID: fmt.Sprint("m", i),
				Parts: json.RawMessage(`[{"type":"text/plain","data":"hi"}]`)})
			f, _ := json.Marshal(protocol.Frame{Type: protocol.TypeCommand, ID: fmt.Sprint(i), Command: protocol.CmdSend, Data: data})
			c.Handle(f)
		}
	}()
	select {
	case <-handled: // every send is queued, none committed
	case <-time.After(10 * time.Second):
		t.Fatal("the connection waited for a send's commit before reading the next command")
	}
	tr.mu.Lock()
	early := len(tr.frames)
	tr.mu.Unlock()
	if early != 0 {
		t.Fatalf("%d answers before the commit", early)
	}
	close(gate.release)
	c.WaitSends()

	if fmt.Sprint(gate.queued) != "[m0 m1 m2 m3 m4]" {
		t.Fatalf("queued in the order %v", gate.queued)
	}
	tr.mu.Lock()
	defer tr.mu.Unlock()
	seen := map[string]bool{}
	for _, b := range tr.frames {
		var f protocol.Frame
		var m protocol.SendResult
		if err := json.Unmarshal(b, &f); err != nil || f.Error != nil || json.Unmarshal(f.Result, &m) != nil {
			t.Fatalf("answer %s", b)
		}
		// A new message's answer holds what the server added, not the
		// command's clientId: its seq tells the command's order.
		if m.Duplicate || m.ID == "" || fmt.Sprint(m.Seq-1) != f.ID {
			t.Errorf("answer %s: not the message of command %s", b, f.ID)
		}
		seen[f.ID] = true
	}
	if len(seen) != n {
		t.Fatalf("answers %q", tr.frames)
	}
}
