package nats

import (
	"context"
	"encoding/json"
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/tidings/tidings"
)

// testEvents returns n events with positions after from, every field set
// (Conversations included, which the event's own JSON leaves out).
func testEvents(from int64, n int) []*tidings.Event {
	evs := make([]*tidings.Event, n)
	for i := range evs {
		seq := from + int64(i)*3 + 2 // positions need not be consecutive
		ev := &tidings.Event{
			Seq:            seq,
			ID:             fmt.Sprintf("ev%d", seq),
			AppID:          "shop.eu",
			Name:           tidings.EventMessageSent,
			Time:           time.Date(2026, 12, 1, 18, 0, 0, int(seq)*1001, time.UTC),
			Actor:          &tidings.Profile{ID: "alice@x", DisplayName: "Alice", AvatarURL: "https://a.example/a.png"},
			ConversationID: "conv:1",
			Payload:        json.RawMessage(fmt.Sprintf(`{"id":"m%d","seq":%d,"text":"héllo \"quoted\""}`, seq, seq)),
		}
		if i%3 == 1 {
			ev.Name = tidings.EventProfileUpdate
			ev.ConversationID = ""
			ev.UserID = "bob"
			ev.Actor = nil
			ev.Conversations = []string{"c1", "c2"}
		}
		evs[i] = ev
	}
	return evs
}

// rangesFrom returns n chained ranges, starting after position 100.
func rangesFrom(n int) []tidings.EventRange {
	out := make([]tidings.EventRange, n)
	from := int64(100)
	for i := range out {
		evs := testEvents(from, i%4) // some ranges are empty
		to := from + 11
		out[i] = tidings.EventRange{From: from, To: to, Events: evs}
		from = to
	}
	return out
}

func TestEncodeRangeRoundTrip(t *testing.T) {
	r := tidings.EventRange{From: 10, To: 40, Events: testEvents(10, 9)}
	msgs, err := encodeRange(r, 1<<20)
	if err != nil || len(msgs) != 1 {
		t.Fatalf("encode: %d messages, %v", len(msgs), err)
	}
	got, err := decodeRange(msgs[0])
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, r) {
		t.Fatalf("decoded range differs:\n got %+v\nwant %+v", got, r)
	}
	if _, err := decodeRange([]byte(`{"from":1,"to":2,"events":[null]}`)); err == nil {
		t.Fatal("a null event decoded without error")
	}
}

// A range too large for one message goes as consecutive ranges that
// chain, holding every event once, in order.
func TestEncodeRangeSplits(t *testing.T) {
	r := tidings.EventRange{From: 10, To: 99, Events: testEvents(10, 13)}
	one, _ := encodeRange(tidings.EventRange{From: 10, To: 12, Events: r.Events[:1]}, 1<<20)
	msgs, err := encodeRange(r, int64(len(one[0])*3))
	if err != nil {
		t.Fatal(err)
	}
	if len(msgs) < 4 {
		t.Fatalf("%d messages, want at least 4", len(msgs))
	}
	at := r.From
	var evs []*tidings.Event
	for _, b := range msgs {
		if len(b) > len(one[0])*3 {
			t.Fatalf("a message of %d bytes exceeds the maximum", len(b))
		}
		part, err := decodeRange(b)
		if err != nil {
			t.Fatal(err)
		}
		if part.From != at || len(part.Events) == 0 || part.Events[len(part.Events)-1].Seq > part.To {
			t.Fatalf("part (%d, %d] with %d events does not chain from %d", part.From, part.To, len(part.Events), at)
		}
		at = part.To
		evs = append(evs, part.Events...)
	}
	if at != r.To || !reflect.DeepEqual(evs, r.Events) {
		t.Fatalf("parts end at %d with %d events; want %d and the range's %d", at, len(evs), r.To, len(r.Events))
	}
	if _, err := encodeRange(tidings.EventRange{From: 1, To: 2, Events: r.Events[:1]}, 10); tidings.ErrorCode(err) != tidings.ETooLarge {
		t.Fatalf("one event over the maximum: %v, want too_large", err)
	}
}

// Every subscriber, on every node, the publisher's included, receives
// every range and live update, in the order published, one call at a
// time; a cluster with another prefix receives none of them.
func TestBrokerDeliversInOrder(t *testing.T) {
	conns := sharedConns(t, 3)
	ctx := testContext(t)
	recs := make([]*recorder, len(conns))
	for i, c := range conns {
		recs[i] = &recorder{}
		sub, err := c.Subscribe(ctx, recs[i])
		if err != nil {
			t.Fatalf("subscribe: %v", err)
		}
		t.Cleanup(func() { sub.Close() })
	}
	other := connect(t, sharedURL, testPrefix(), "other")
	stranger := &recorder{}
	if _, err := other.Subscribe(ctx, stranger); err != nil {
		t.Fatal(err)
	}

	ranges := rangesFrom(300)
	var live []tidings.LiveUpdate
	var want []string
	pub := conns[0]
	for i, r := range ranges {
		if err := pub.PublishRange(ctx, r); err != nil {
			t.Fatalf("publish range %d: %v", i, err)
		}
		want = append(want, "range")
		if i%5 == 0 {
			u := tidings.LiveUpdate{AppID: []string{"shop", "shop.eu", "a@b:c"}[i%3], Name: "conversation.participantTyping",
				ConversationID: "conv.1", Payload: json.RawMessage(fmt.Sprintf(`{"n":%d}`, i))}
			if i%10 == 0 {
				u = tidings.LiveUpdate{AppID: "shop", Name: "presence.update", UserIDs: []string{"alice", "bob.b"}, Payload: json.RawMessage(`{"online":true}`)}
			}
			if err := pub.PublishLive(ctx, u); err != nil {
				t.Fatalf("publish live %d: %v", i, err)
			}
			live = append(live, u)
			want = append(want, "live")
		}
	}
	for i, rec := range recs {
		waitFor(t, fmt.Sprintf("node %d to receive everything", i), func() bool {
			r, l, _ := rec.counts()
			return r >= len(ranges) && l >= len(live)
		})
		gotRanges, gotLive := rec.snapshot()
		if !reflect.DeepEqual(gotRanges, ranges) {
			t.Errorf("node %d: ranges differ from those published", i)
		}
		if !reflect.DeepEqual(gotLive, live) {
			t.Errorf("node %d: live updates differ from those published:\n got %+v\nwant %+v", i, gotLive, live)
		}
		rec.mu.Lock()
		if !reflect.DeepEqual(rec.log, want) || rec.overlap || rec.lost != 0 {
			t.Errorf("node %d: calls %v (overlapping: %v, lost %d), want ranges and live updates in the order published", i, strings.Join(rec.log, " "), rec.overlap, rec.lost)
		}
		rec.mu.Unlock()
	}
	if r, l, _ := stranger.counts(); r != 0 || l != 0 {
		t.Errorf("a subscriber with another prefix received %d ranges and %d live updates", r, l)
	}
}

// A range larger than the server's maximum message goes in parts that
// chain; a subscription closed receives nothing more.
func TestBrokerLargeRangeAndClose(t *testing.T) {
	conns := sharedConns(t, 2)
	ctx := testContext(t)
	rec := &recorder{}
	sub, err := conns[1].Subscribe(ctx, rec)
	if err != nil {
		t.Fatal(err)
	}
	evs := testEvents(1000, 6)
	big := `"` + strings.Repeat("x", int(conns[0].nc.MaxPayload()/3)) + `"`
	for _, ev := range evs {
		ev.Payload = json.RawMessage(`{"text":` + big + `}`)
	}
	r := tidings.EventRange{From: 1000, To: 2000, Events: evs}
	if err := conns[0].PublishRange(ctx, r); err != nil {
		t.Fatalf("publish a large range: %v", err)
	}
	var got []tidings.EventRange
	waitFor(t, "the parts of the large range", func() bool {
		got, _ = rec.snapshot()
		return len(got) > 0 && got[len(got)-1].To == r.To
	})
	at := r.From
	var gotEvents []*tidings.Event
	for _, part := range got {
		if part.From != at {
			t.Fatalf("part (%d, %d] does not start at %d", part.From, part.To, at)
		}
		at = part.To
		gotEvents = append(gotEvents, part.Events...)
	}
	if len(got) < 2 || !reflect.DeepEqual(gotEvents, evs) {
		t.Fatalf("%d parts with %d events; want several, with the range's %d events", len(got), len(gotEvents), len(evs))
	}

	if err := sub.Close(); err != nil {
		t.Fatal(err)
	}
	// A second subscriber tells when the next range has gone through.
	rec2 := &recorder{}
	if _, err := conns[1].Subscribe(ctx, rec2); err != nil {
		t.Fatal(err)
	}
	if err := conns[0].PublishRange(ctx, tidings.EventRange{From: 2000, To: 2001}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the second subscriber's range", func() bool { n, _, _ := rec2.counts(); return n == 1 })
	if n, _, _ := rec.counts(); n != len(got) {
		t.Fatalf("a closed subscription received %d more ranges", n-len(got))
	}
}

// A subscription ends with its context.
func TestBrokerSubscriptionEndsWithContext(t *testing.T) {
	conns := sharedConns(t, 1)
	ctx, cancel := context.WithCancel(testContext(t))
	if _, err := conns[0].Subscribe(ctx, &recorder{}); err != nil {
		t.Fatal(err)
	}
	cancel()
	waitFor(t, "the subscription to end", func() bool {
		conns[0].mu.Lock()
		defer conns[0].mu.Unlock()
		return len(conns[0].subs) == 0
	})
}

// blocker is a recorder whose first Range waits until released.
type blocker struct {
	recorder
	entered, release chan struct{}
	once             bool
}

func (b *blocker) Range(r tidings.EventRange) {
	if !b.once {
		b.once = true
		close(b.entered)
		<-b.release
	}
	b.recorder.Range(r)
}

// A handler too slow for what arrives loses messages, and is told Lost
// before the first range that follows a gap.
func TestBrokerSlowHandlerIsToldLost(t *testing.T) {
	defer func(n int) { subBuffer = n }(subBuffer)
	subBuffer = 4
	conns := sharedConns(t, 2)
	ctx := testContext(t)
	rec := &blocker{entered: make(chan struct{}), release: make(chan struct{})}
	s, err := conns[1].Subscribe(ctx, rec)
	if err != nil {
		t.Fatal(err)
	}
	ranges := rangesFrom(50)
	if err := conns[0].PublishRange(ctx, ranges[0]); err != nil {
		t.Fatal(err)
	}
	<-rec.entered
	for _, r := range ranges[1:] {
		if err := conns[0].PublishRange(ctx, r); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, "messages to be dropped", func() bool {
		n, err := s.(*subscription).sub.Dropped()
		return err == nil && n > 0
	})
	close(rec.release)
	// Ranges published once the handler keeps up arrive: publish until
	// one does.
	waitFor(t, "a range after the handler caught up", func() bool {
		last := ranges[len(ranges)-1]
		r := tidings.EventRange{From: last.To, To: last.To + 1}
		ranges = append(ranges, r)
		if err := conns[0].PublishRange(ctx, r); err != nil {
			t.Fatal(err)
		}
		got, _ := rec.snapshot()
		return len(got) > 0 && got[len(got)-1].To > ranges[49].To
	})
	rec.mu.Lock()
	defer rec.mu.Unlock()
	if rec.lost == 0 || len(rec.ranges) == len(ranges) {
		t.Fatalf("%d of %d ranges received, lost told %d times; want some dropped, and lost told", len(rec.ranges), len(ranges), rec.lost)
	}
	// After the last range received before each gap, Lost is told: at
	// once, or after ranges received later (which show the gap by
	// themselves), but never only before it.
	lastLost := -1
	for i, call := range rec.log {
		if call == "lost" {
			lastLost = i
		}
	}
	i, prevAt := 0, 0
	var prev tidings.EventRange
	for at, call := range rec.log {
		if call != "range" {
			continue
		}
		r := rec.ranges[i]
		if i > 0 && r.From != prev.To && lastLost < prevAt {
			t.Fatalf("no Lost after the gap between (%d, %d] and (%d, %d]: calls %v", prev.From, prev.To, r.From, r.To, rec.log)
		}
		prev, prevAt = r, at
		i++
	}
}
