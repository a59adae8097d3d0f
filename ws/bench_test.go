package ws_test

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	nethttp "net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tidings/tidings"
	"github.com/tidings/tidings/protocol"
	"github.com/tidings/tidings/realtime"
	"github.com/tidings/tidings/ws"
)

// BenchmarkSocketSends sends messages of 64 bytes over one connection,
// keeping up to window sends in flight (waiting for answers only when
// window are unanswered), through the whole server: store, commit
// included. window=1 is a client that waits for each answer.
func BenchmarkSocketSends(b *testing.B) {
	for _, window := range []int{1, 20} {
		b.Run(fmt.Sprint("window=", window), func(b *testing.B) {
			s := startStack(b, func(n *realtime.Node, _ *ws.Handler) { n.CommandRate, n.CommandBurst = 1e9, 1e9 })
			s.mkUsers("a", "alice", "bob")
			conv := s.conv("a", "alice", "bob")
			alice := dial(b, s)
			alice.auth("", s.token("a", "alice"), protocol.AuthArgs{})
			done := make(chan struct{})
			defer close(done)
			go func() { // the sender's echoes
				for {
					select {
					case <-alice.updates:
					case <-done:
						return
					}
				}
			}()
			data, _ := json.Marshal(protocol.SendArgs{ConversationID: conv,
				Parts: json.RawMessage(`[{"type":"text/plain","data":"` + strings.Repeat("x", 64) + `"}]`)})
			sem := make(chan struct{}, window)
			var wg sync.WaitGroup
			b.ResetTimer()
			for i := range b.N {
				sem <- struct{}{}
				id := fmt.Sprint("s", i)
				ch := make(chan protocol.Frame, 1)
				alice.mu.Lock()
				alice.answers[id] = ch
				alice.mu.Unlock()
				alice.write(protocol.Frame{Type: protocol.TypeCommand, ID: id, Command: protocol.CmdSend, Data: data})
				wg.Add(1)
				go func() {
					defer wg.Done()
					if f := <-ch; f.Error != nil {
						b.Error(f.Error)
					}
					<-sem
				}()
			}
			wg.Wait()
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "sends/s")
		})
	}
}

// fanoutAudience starts a server with a conversation of n members and
// the sender ids[0], each member on a connection of its own that counts
// the updates and WebSocket messages it receives, without replying.
func fanoutAudience(b *testing.B, n int) (s *stack, ids []string, conv string, updates, messages *atomic.Int64) {
	return fanoutAudienceOf(b, n, false)
}

// fanoutAudienceOf is fanoutAudience, its members on tidings.v2 when v2.
func fanoutAudienceOf(b *testing.B, n int, v2 bool) (s *stack, ids []string, conv string, updates, messages *atomic.Int64) {
	s = startStack(b, nil)
	ids = make([]string, n+1)
	for i := range ids {
		ids[i] = fmt.Sprint("u", i)
	}
	s.mkUsers("a", ids...)
	conv = s.conv("a", ids[0], ids[1:]...)
	updates, messages = new(atomic.Int64), new(atomic.Int64)
	auth := []byte(`"id":"1"`)
	update := []byte(`{"type":"update","ref":`) // durable: not presence
	var header nethttp.Header
	if v2 {
		update = []byte(`{"r":`)
		header = nethttp.Header{}
		header.Set("Sec-WebSocket-Protocol", protocol.SubprotocolV2)
	}
	for _, id := range ids[1:] {
		c := rawAuthWith(b, s, header, id, "d")
		c.SetDeadline(time.Time{})
		authed := make(chan struct{})
		go countUpdates(c, auth, update, authed, updates, messages)
		<-authed
	}
	return s, ids, conv, updates, messages
}

// BenchmarkFanoutWrites sends messages to a conversation of n members,
// each on a connection of its own that reads without replying, keeping
// up to 20 sends in flight, and waits until every member has every
// message: the writers' side of a fan-out, through the whole server (the
// store's commits and the readers' work included). ns/delivery is the
// time per update received; messages/delivery the WebSocket messages the
// readers got per update (the writes, with coalescing).
func BenchmarkFanoutWrites(b *testing.B) {
	for _, n := range []int{100, 1000} {
		b.Run(fmt.Sprint("subscribers=", n), func(b *testing.B) {
			s, ids, conv, updates, messages := fanoutAudience(b, n)
			sem := make(chan struct{}, 20)
			var wg sync.WaitGroup
			b.ResetTimer()
			for i := range b.N {
				sem <- struct{}{}
				wg.Add(1)
				go func() {
					defer wg.Done()
					defer func() { <-sem }()
					if _, _, err := s.msgs.SendMessage(s.as("a", ids[0]), conv, tidings.NewMessage{
						Parts: []tidings.Part{{Type: "text/plain", Data: fmt.Sprintf("%064d", i)}}}); err != nil {
						b.Error(err)
					}
				}()
			}
			wg.Wait()
			want := int64(b.N * n)
			for updates.Load() < want {
				time.Sleep(100 * time.Microsecond)
			}
			b.StopTimer()
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(want), "ns/delivery")
			b.ReportMetric(float64(messages.Load())/float64(want), "messages/delivery")
		})
	}
}

// BenchmarkFanoutDelivery is BenchmarkFanoutWrites without the store:
// events are handed to the node as the store publishes them, keeping up
// to 20 not yet received by every member (as the peer tool's window), so
// that what is measured is the node's and the writers' work per delivery
// (and the readers', the same before and after a change).
func BenchmarkFanoutDelivery(b *testing.B) {
	for _, n := range []int{100, 1000} {
		b.Run(fmt.Sprint("subscribers=", n), func(b *testing.B) { benchFanoutDelivery(b, n, false) })
	}
}

// BenchmarkFanoutDeliveryV2 is BenchmarkFanoutDelivery in tidings.v2
// (v2=false: the same in tidings.v1, to compare within one run).
func BenchmarkFanoutDeliveryV2(b *testing.B) {
	for _, v2 := range []bool{false, true} {
		b.Run(fmt.Sprintf("v2=%t/subscribers=1000", v2), func(b *testing.B) { benchFanoutDelivery(b, 1000, v2) })
	}
}

func benchFanoutDelivery(b *testing.B, n int, v2 bool) {
	s, ids, conv, updates, messages := fanoutAudienceOf(b, n, v2)
	m := s.send("a", ids[0], conv, "first")
	waitFor(b, "the first message to reach everyone", func() bool { return updates.Load() == int64(n) })
	updates.Store(0)
	messages.Store(0)
	payload, _ := json.Marshal(tidings.MessagePayload{Message: m})
	last, _ := protocol.ParseRef(s.lastRef()) // the event of m
	const window = 20
	b.ResetTimer()
	for i := range b.N {
		for updates.Load() < int64(i+1-window)*int64(n) {
			time.Sleep(20 * time.Microsecond)
		}
		s.node.Publish(&tidings.Event{Seq: last + int64(i) + 1, ID: fmt.Sprint("ev", i), AppID: "a",
			Name: tidings.EventMessageSent, Time: time.Now(), Actor: &tidings.Profile{ID: ids[0]},
			ConversationID: conv, Payload: payload})
	}
	want := int64(b.N * n)
	for t0 := time.Now(); updates.Load() < want; {
		if time.Since(t0) > 10*time.Second {
			b.Fatalf("got %d updates want %d", updates.Load(), want)
		}
		time.Sleep(20 * time.Microsecond)
	}
	b.StopTimer()
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(want), "ns/delivery")
	b.ReportMetric(float64(messages.Load())/float64(want), "messages/delivery")
}

// countUpdates reads the server's frames of a raw connection, counting
// the durable updates and the WebSocket messages that carried them; it closes
// authed when the answer to auth (command "1") has come.
func countUpdates(c *rawConn, auth, update []byte, authed chan struct{}, updates, messages *atomic.Int64) {
	var buf []byte
	for {
		var h [2]byte
		if _, err := io.ReadFull(c.br, h[:]); err != nil {
			return
		}
		n := uint64(h[1] & 0x7f)
		switch n {
		case 126:
			var l [2]byte
			if _, err := io.ReadFull(c.br, l[:]); err != nil {
				return
			}
			n = uint64(binary.BigEndian.Uint16(l[:]))
		case 127:
			var l [8]byte
			if _, err := io.ReadFull(c.br, l[:]); err != nil {
				return
			}
			n = binary.BigEndian.Uint64(l[:])
		}
		if uint64(cap(buf)) < n {
			buf = make([]byte, n)
		}
		buf = buf[:n]
		if _, err := io.ReadFull(c.br, buf); err != nil {
			return
		}
		if authed != nil && bytes.Contains(buf, auth) {
			close(authed)
			authed = nil
		}
		if k := bytes.Count(buf, update); k > 0 {
			updates.Add(int64(k))
			messages.Add(1)
		}
	}
}

// BenchmarkFanoutLatency hands the node one event at a time (a lone
// event, as at a low rate: each is delivered alone, not batched with
// others) for a conversation of n members, each on a connection of its
// own, and waits until every member has it before the next: the latency
// of one fan-out, from the event's publication to its receipt by each
// member (p50, p99 and the last, in ms). With replies, each member
// acknowledges every second update it receives, right after reading it,
// as the peer tool does at 2 messages/s: those replies reach the server
// while it still writes the event to the others.
func BenchmarkFanoutLatency(b *testing.B) {
	for _, n := range []int{1000} {
		for _, replies := range []bool{false, true} {
			b.Run(fmt.Sprintf("subscribers=%d/replies=%v", n, replies), func(b *testing.B) {
				benchFanoutLatency(b, n, replies)
			})
		}
	}
}

func benchFanoutLatency(b *testing.B, n int, replies bool) {
	s := startStack(b, nil)
	ids := make([]string, n+1)
	for i := range ids {
		ids[i] = fmt.Sprint("u", i)
	}
	s.mkUsers("a", ids...)
	first := min(n, 999)
	conv := s.conv("a", ids[0], ids[1:first+1]...)
	for _, id := range ids[first+1:] {
		if _, err := s.convs.AddParticipant(s.as("a", ids[0]), conv, tidings.NewParticipant{UserID: id}); err != nil {
			b.Fatal(err)
		}
	}
	var published atomic.Int64 // unix ns of the event under way
	var got atomic.Int64       // receipts of the event under way
	all := make(chan struct{}, 1)
	lat := make([]int64, 0, b.N*n)
	var latMu sync.Mutex
	auth := []byte(`"id":"1"`)
	update := []byte(`{"type":"update","ref":"`)
	for _, id := range ids[1:] {
		c := rawAuth(b, s, id, "d")
		authed := make(chan struct{})
		go func(authed chan struct{}) { // its own copy: it sets it to nil
			k := 0
			for {
				_, p, err := c.readFrame()
				if err != nil {
					return
				}
				if authed != nil && bytes.Contains(p, auth) {
					close(authed)
					authed = nil
				}
				for len(p) > 0 {
					i := bytes.Index(p, update)
					if i < 0 {
						break
					}
					d := time.Now().UnixNano() - published.Load()
					rest := p[i+len(update):]
					ref := rest[:bytes.IndexByte(rest, '"')]
					p = rest
					latMu.Lock()
					lat = append(lat, d)
					latMu.Unlock()
					if got.Add(1) == int64(n) {
						all <- struct{}{}
					}
					if k++; replies && k%2 == 0 {
						c.writeText([]byte(`{"type":"reply","ref":"` + string(ref) + `"}`))
					}
				}
			}
		}(authed)
		<-authed
	}
	m := s.send("a", ids[0], conv, "first")
	<-all
	payload, _ := json.Marshal(tidings.MessagePayload{Message: m})
	last, _ := protocol.ParseRef(s.lastRef())
	lat = lat[:0]
	b.ResetTimer()
	for i := range b.N {
		got.Store(0)
		published.Store(time.Now().UnixNano())
		s.node.Publish(&tidings.Event{Seq: last + int64(i) + 1, ID: fmt.Sprint("ev", i), AppID: "a",
			Name: tidings.EventMessageSent, Time: time.Now(), Actor: &tidings.Profile{ID: ids[0]},
			ConversationID: conv, Payload: payload})
		select {
		case <-all:
		case <-time.After(10 * time.Second):
			b.Fatalf("got %d updates want %d", got.Load(), n)
		}
		b.StopTimer()
		time.Sleep(10 * time.Millisecond) // the replies handled: the next event comes alone
		b.StartTimer()
	}
	b.StopTimer()
	latMu.Lock()
	slices.Sort(lat)
	q := func(p float64) float64 { return float64(lat[int(p*float64(len(lat)-1))]) / 1e6 }
	b.ReportMetric(q(0.5), "p50-ms")
	b.ReportMetric(q(0.99), "p99-ms")
	b.ReportMetric(q(1), "last-ms")
	latMu.Unlock()
}
