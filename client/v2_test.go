package client_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/tidings/tidings"
	"github.com/tidings/tidings/client"
)

// On tidings.v2 the server sends no update of a message to the connection
// that sent it (with a clientId): the client makes it from the command and
// the answer, which the listeners get as they would the update, in its
// place among the others, with everything the update has.
func TestOwnMessageIsMadeFromTheAnswer(t *testing.T) {
	t.Parallel()
	s := startServer(t)
	s.mkUsers(t, "alice", "bob")
	conv := s.conv(t, "alice", "bob")
	alice := newClient(t, s.URL(), client.WithToken(s.token(t, "alice", time.Hour)))
	bob := newClient(t, s.URL(), client.WithToken(s.token(t, "bob", time.Hour)))
	mine, theirs := newRecorder(), newRecorder()
	alice.AddEventListener(mine.listen)
	bob.AddEventListener(theirs.listen)
	waitConnected(t, alice)
	waitConnected(t, bob)
	if !client.SpeaksV2(alice) {
		t.Fatal("the client does not speak tidings.v2")
	}
	ctx := context.Background()
	m, err := alice.Socket().SendMessage(ctx, conv, tidings.NewMessage{ClientID: "a-1", Alert: "Alice: hi",
		Parts:    []tidings.Part{{Type: "text/plain", Data: "hi"}, {Type: "image/png", Name: "x.png", Data: "aGk="}},
		Metadata: []byte(`{"k":"v"}`)})
	if err != nil {
		t.Fatal(err)
	}
	own := waitEvent(t, mine, func(e *client.MessageSent) bool { return e.ConversationID == conv })
	other := waitEvent(t, theirs, func(e *client.MessageSent) bool { return e.ConversationID == conv })
	if !own.Silent || other.Silent || own.Ref == "" || own.Ref != other.Ref || own.Message.ClientID != "a-1" || other.Message.ClientID != "" {
		t.Errorf("own %+v\nother's %+v", own.EventInfo, other.EventInfo)
	}
	o, w := *own, *other
	o.Silent, o.Payload, w.Payload = false, nil, nil
	om, wm := *o.Message, *w.Message
	om.ClientID = ""
	oa, wa := *o.Actor, *w.Actor
	o.Message, w.Message, o.Actor, w.Actor = nil, nil, nil, nil
	if g, want := fmt.Sprintf("%+v %+v %+v", o.EventInfo, oa, om), fmt.Sprintf("%+v %+v %+v", w.EventInfo, wa, wm); g != want {
		t.Errorf("made\n%s\nthe others'\n%s", g, want)
	}
	if fmt.Sprintf("%+v", *m) != fmt.Sprintf("%+v", *own.Message) {
		t.Errorf("answer %+v\nupdate %+v", *m, *own.Message)
	}
	// Acknowledged as any update.
	waitFor(t, "the ref acknowledged", func() bool { return alice.LastRef() == own.Ref })
}

// The messages a tidings.v2 client sends over the socket while others
// send come to its listeners once each, in order, through cuts of the
// connection: made from the answer, or replayed when the connection
// ended before the listeners had them.
func TestOwnMessagesComeOnceInOrderThroughCuts(t *testing.T) {
	t.Parallel()
	s := startServer(t)
	s.mkUsers(t, "alice", "bob")
	conv := s.conv(t, "bob", "alice")
	p := newProxy(t, s.Addr())
	rec := newRecorder()
	var statuses statusLog
	alice := newClient(t, p.URL(), client.WithToken(s.token(t, "alice", time.Hour)), client.WithDevice("phone"), fastBackoff,
		client.WithEventListener(rec.listen), client.WithStatusListener(statuses.listen))
	waitConnected(t, alice)
	bob := newClient(t, s.URL(), client.WithToken(s.token(t, "bob", time.Hour)), client.WithMode(client.ManualMode))

	const n, cuts = 60, 3
	done := sender(t, bob, conv, n)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { // alice, over the socket, retrying with the same clientId
		defer wg.Done()
		for i := range n {
			m := textMessage(fmt.Sprintf("a%03d", i))
			m.ClientID = fmt.Sprintf("a%03d", i)
			for {
				ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				_, err := alice.Socket().SendMessage(ctx, conv, m)
				cancel()
				if err == nil {
					break
				}
				if errors.Is(err, client.ErrClosed) {
					return
				}
				time.Sleep(10 * time.Millisecond)
			}
		}
	}()
	for i := 1; i <= cuts; i++ {
		rec.waitUntil(t, "messages", func(evs []client.Event) bool { return len(evs) >= i*2*n/(cuts+1) })
		waitFor(t, fmt.Sprintf("connection %d", i), func() bool { return statuses.count(client.StatusConnected) >= i })
		p.Cut()
	}
	wg.Wait()
	done()
	var got []*client.MessageSent
	rec.waitUntil(t, "every message", func(evs []client.Event) bool {
		got = got[:0]
		for _, e := range evs {
			if m, ok := e.(*client.MessageSent); ok && m.ConversationID == conv {
				got = append(got, m)
			}
		}
		return len(got) >= 2*n
	})
	mine := 0
	for i, m := range got {
		if m.Message.Seq != int64(i+1) {
			t.Fatalf("message %d has seq %d: %v", i, m.Message.Seq, m.Message.Parts[0].Data)
		}
		if m.Message.Sender.ID == "alice" {
			mine++
			if m.Message.ClientID != m.Message.Parts[0].Data || !m.Silent || m.Message.SentAt.IsZero() {
				t.Errorf("own message %+v", m.Message)
			}
		}
	}
	if len(got) != 2*n || mine != n {
		t.Errorf("%d messages, %d of alice's", len(got), mine)
	}
}
