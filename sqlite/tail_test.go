package sqlite_test

import (
	"context"
	"slices"
	"testing"

	"github.com/tidings/tidings"
	"github.com/tidings/tidings/sqlite"
)

// The tail gives the committed events in position order, the same the
// writer publishes (a profile event with the conversations it goes
// through), in ranges that chain, and an empty range when nothing more
// is committed.
func TestTailGivesTheCommittedEventsInOrder(t *testing.T) {
	e := newEnv(t)
	tail := sqlite.NewTail(e.db)
	ctx := context.Background()
	e.mkUsers(t, "a", "alice", "bob")
	c := e.mkConv(t, "a", "alice", tidings.NewConversation{Participants: []tidings.NewParticipant{{UserID: "bob"}}})
	for _, body := range []string{"m1", "m2", "m3"} {
		e.send(t, "alice", c.ID, body)
	}
	name := "Bobby"
	must[*tidings.User](t)(e.users.UpdateUser(user("a", "bob"), "bob", tidings.UserUpdate{DisplayName: &name}))
	published := e.events.take()

	var got []*tidings.Event
	var after int64
	for {
		r, err := tail.Final(ctx, after, 2)
		if err != nil {
			t.Fatal(err)
		}
		if r.From != after {
			t.Fatalf("range (%d, %d] does not start after %d", r.From, r.To, after)
		}
		if len(r.Events) == 0 {
			if r.To != after {
				t.Fatalf("an empty range ends at %d, want %d", r.To, after)
			}
			break
		}
		if len(r.Events) > 2 || r.To != r.Events[len(r.Events)-1].Seq {
			t.Fatalf("range (%d, %d] with %d events (limit 2)", r.From, r.To, len(r.Events))
		}
		got = append(got, r.Events...)
		after = r.To
	}
	if len(got) != len(published) {
		t.Fatalf("the tail gave %d events, the writer published %d", len(got), len(published))
	}
	for i, ev := range got {
		p := published[i]
		if ev.Seq != p.Seq || ev.ID != p.ID || ev.Name != p.Name || ev.ConversationID != p.ConversationID || ev.UserID != p.UserID {
			t.Fatalf("event %d: tail %d %s, published %d %s", i, ev.Seq, ev.Name, p.Seq, p.Name)
		}
		if !slices.Equal(ev.Conversations, p.Conversations) {
			t.Fatalf("event %d (%s): conversations %v, published with %v", i, ev.Name, ev.Conversations, p.Conversations)
		}
	}
	if last := got[len(got)-1]; last.Name != tidings.EventProfileUpdate || !slices.Equal(last.Conversations, []string{c.ID}) {
		t.Fatalf("the last event is %s through %v, want the profile update through %s", last.Name, last.Conversations, c.ID)
	}
}
