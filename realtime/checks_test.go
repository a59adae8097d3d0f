package realtime

import (
	"math/rand/v2"
	"slices"
	"testing"
)

// The tick takes exactly the clients due, each once, earliest first; a
// client asked for sooner is taken sooner; an ended one never again.
func TestCheckQueueTakesTheClientsDue(t *testing.T) {
	var q checkQueue
	r := rand.New(rand.NewPCG(1, 2))
	cs := make([]*Client, 500)
	at := map[*Client]int64{}
	for i := range cs {
		cs[i] = &Client{}
		at[cs[i]] = 1 + r.Int64N(1000)
		q.schedule(cs[i], at[cs[i]])
		q.schedule(cs[i], at[cs[i]]+50) // later: stays under the earlier time
	}
	q.schedule(cs[7], 0) // sooner
	at[cs[7]] = 0
	q.remove(cs[8])
	q.schedule(cs[8], 0) // ended: not queued again
	for now := int64(0); now <= 1000; now += 100 {
		got := q.due(now, nil)
		if !slices.IsSortedFunc(got, func(a, b *Client) int { return int(at[a] - at[b]) }) {
			t.Fatal("not taken earliest first")
		}
		for _, c := range got {
			if at[c] > now || at[c] <= now-100 && now > 0 {
				t.Fatalf("at %d: took a client due at %d", now, at[c])
			}
			if c == cs[8] {
				t.Fatal("an ended client was taken")
			}
			delete(at, c)
		}
	}
	if len(at) != 1 || at[cs[8]] == 0 {
		t.Fatalf("%d clients never taken", len(at)-1)
	}
	if len(q.heap) != 0 {
		t.Fatalf("%d clients left in the queue", len(q.heap))
	}
}
