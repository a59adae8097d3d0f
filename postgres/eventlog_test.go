package postgres

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/tidings/tidings"
)

// say stores a conversation event in conv (a message, as far as the log
// is concerned) and returns its position.
func say(t *testing.T, db *DB, conv, text string) int64 {
	t.Helper()
	var seq int64
	err := db.update(context.Background(), func(tx *Tx) error {
		if err := lockConversation(tx.ctx, tx, "a", conv); err != nil {
			return err
		}
		ev, err := tx.emitEvent("a", tidings.EventMessageSent, nil, conv, "", map[string]string{"text": text})
		if err == nil {
			seq = ev.Seq
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return seq
}

func names(evs []*tidings.Event) []string {
	var out []string
	for _, e := range evs {
		switch {
		case e.Name == tidings.EventMessageSent:
			var p map[string]string
			unmarshalJSON(e.Payload, &p)
			out = append(out, p["text"])
		case e.UserID != "":
			out = append(out, e.Name+"/"+e.UserID)
		default:
			out = append(out, e.Name)
		}
	}
	return out
}

// TestUserEventsSpans: a user's stream holds a conversation's events from
// the one that added them to the one that removed them, both included,
// and their own profile; paging and resuming in the middle give the rest.
func TestUserEventsSpans(t *testing.T) {
	db := fixture(t, nil, "alice", "bob")
	log := NewEventLog(db)
	ctx := context.Background()
	join(t, db, "c", "alice")
	say(t, db, "c", "before bob")
	join(t, db, "c", "bob")
	say(t, db, "c", "with bob")
	leave(t, db, "c", "bob")
	say(t, db, "c", "bob away")
	join(t, db, "c", "bob")
	say(t, db, "c", "bob back")
	say(t, db, "other", "elsewhere")

	var all []*tidings.Event
	for after := int64(0); ; {
		evs, err := log.UserEvents(ctx, "a", "bob", after, 2)
		if err != nil {
			t.Fatal(err)
		}
		all = append(all, evs...)
		if len(evs) < 2 {
			break
		}
		after = evs[len(evs)-1].Seq
	}
	want := []string{tidings.EventProfileUpdate + "/bob", tidings.EventParticipantAdded + "/bob", "with bob",
		tidings.EventParticipantRemoved + "/bob", tidings.EventParticipantAdded + "/bob", "bob back"}
	if got := names(all); !slices.Equal(got, want) {
		t.Fatalf("bob's stream %q, want %q", got, want)
	}
	rest, err := log.UserEvents(ctx, "a", "bob", all[3].Seq, 100)
	if err != nil || !slices.Equal(names(rest), want[4:]) {
		t.Errorf("bob's stream after his removal %q, %v; want %q", names(rest), err, want[4:])
	}
	ms, err := log.UserConversations(ctx, "a", "bob")
	if err != nil || len(ms) != 1 || ms[0].ConversationID != "c" || ms[0].FromSeq != all[4].Seq {
		t.Errorf("bob's conversations %+v, %v; want c from %d", ms, err, all[4].Seq)
	}
	if evs, err := log.UserEvents(ctx, "b", "bob", 0, 100); err != nil || len(evs) != 0 {
		t.Errorf("bob of another app: %q, %v", names(evs), err)
	}
}

// TestPrune: retention removes old events in chunks, keeps the newest,
// ends the spans and shares among them, and readers from before are told
// to resync.
func TestPrune(t *testing.T) {
	db := fixture(t, nil, "alice", "bob")
	log := NewEventLog(db)
	log.PruneChunk = 3
	ctx := context.Background()
	join(t, db, "c", "alice")
	join(t, db, "c", "bob")
	if _, err := NewUserService(db).UpdateUser(serverCtx("a"), "alice", tidings.UserUpdate{DisplayName: ptr("A")}); err != nil {
		t.Fatal(err)
	}
	leave(t, db, "c", "bob")
	for i := range 7 {
		say(t, db, "c", fmt.Sprint(i))
	}
	last, err := log.LastEventSeq(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if n, err := log.Prune(ctx, time.Now().Add(-time.Hour)); err != nil || n != 0 {
		t.Errorf("prune older than an hour ago: %d, %v; want none", n, err)
	}
	var total int
	if err := db.queryRow(ctx, `SELECT count(*) FROM events`).Scan(&total); err != nil {
		t.Fatal(err)
	}
	n, err := log.Prune(ctx, time.Now().Add(time.Hour))
	if err != nil || n != int64(total-1) {
		t.Fatalf("prune everything: %d, %v; want %d (all but the newest)", n, err, total-1)
	}
	if got, err := log.LastEventSeq(ctx); err != nil || got != last {
		t.Errorf("last event seq after prune %d, %v; want %d", got, err, last)
	}
	var spans, shares int
	if err := db.queryRow(ctx, `SELECT (SELECT count(*) FROM memberships), (SELECT count(*) FROM profile_shares)`).Scan(&spans, &shares); err != nil {
		t.Fatal(err)
	}
	if spans != 1 || shares != 0 {
		t.Errorf("%d spans and %d shares left, want alice's open span only", spans, shares)
	}
	_, err = log.UserEvents(ctx, "a", "alice", 0, 10)
	if tidings.ErrorCode(err) != tidings.EResyncRequired {
		t.Errorf("resume from before the pruned events: %v, want resync_required", err)
	}
	if evs, err := log.UserEvents(ctx, "a", "alice", last-1, 10); err != nil || len(evs) != 1 || evs[0].Seq != last {
		t.Errorf("resume after the last pruned: %v, %v", names(evs), err)
	}
	if s := say(t, db, "c", "after"); s <= last {
		t.Errorf("position %d after a prune, want more than %d", s, last)
	}
}

func ptr[T any](v T) *T { return &v }

// TestPublishConcurrentWriters: with many writers committing in any
// order, the publisher hands over every committed event once, in position
// order, and Final read from the start gives the same.
func TestPublishConcurrentWriters(t *testing.T) {
	pub := &recorder{}
	db := fixture(t, pub)
	log := NewEventLog(db)
	ctx := context.Background()
	start := pub.all()
	var mu sync.Mutex
	var committed []int64
	var wg sync.WaitGroup
	for w := range 8 {
		wg.Go(func() {
			for i := range 15 {
				var seqs []int64
				err := db.update(ctx, func(tx *Tx) error {
					seqs = seqs[:0]
					if err := lockConversation(ctx, tx, "a", fmt.Sprint("c", w%3)); err != nil {
						return err
					}
					for range 1 + i%3 {
						ev, err := tx.emitEvent("a", tidings.EventMessageSent, nil, fmt.Sprint("c", w%3), "", map[string]int{"w": w, "i": i})
						if err != nil {
							return err
						}
						seqs = append(seqs, ev.Seq)
					}
					if i%4 == 0 {
						time.Sleep(time.Duration(w) * time.Millisecond) // commit late
					}
					return nil
				})
				if err != nil {
					t.Error(err)
					return
				}
				mu.Lock()
				committed = append(committed, seqs...)
				mu.Unlock()
			}
		})
	}
	// A transaction that draws a position and rolls back leaves a gap.
	db.update(ctx, func(tx *Tx) error {
		if _, err := emitOne(tx, "gone"); err != nil {
			return err
		}
		return tidings.Errorf(tidings.EConflict, "changed my mind")
	})
	wg.Wait()
	slices.Sort(committed)
	newest := committed[len(committed)-1]
	waitFor(t, "every event to be published", func() bool {
		evs := pub.all()
		return len(evs) > 0 && evs[len(evs)-1].Seq >= newest
	})
	var got []int64
	for _, e := range pub.all()[len(start):] {
		if e.Name == tidings.EventMessageSent {
			got = append(got, e.Seq)
		}
	}
	if !slices.Equal(got, committed) {
		t.Fatalf("published %v\nwant %v", got, committed)
	}
	var final []int64
	for after := int64(0); after < newest; {
		r, err := log.Final(ctx, after, 7)
		if err != nil {
			t.Fatal(err)
		}
		if len(r.Events) > 7 {
			t.Fatalf("Final returned %d events, limit 7", len(r.Events))
		}
		for _, e := range r.Events {
			if e.Seq <= after || e.Seq > r.To {
				t.Fatalf("event %d outside (%d, %d]", e.Seq, after, r.To)
			}
			if e.Name == tidings.EventMessageSent {
				final = append(final, e.Seq)
			}
		}
		after = r.To
	}
	if !slices.Equal(final, committed) {
		t.Errorf("Final gave %v\nwant %v", final, committed)
	}
}
