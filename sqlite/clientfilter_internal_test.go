package sqlite

import (
	"context"
	"fmt"
	"path/filepath"
	"testing"
)

// The filter never says absent of a client id it was given, as recent
// grows past its first layer, and says "maybe" of few it was not given.
func TestClientFilterHasNoFalseNegatives(t *testing.T) {
	f := newClientFilter()
	base := newBloom(1000)
	k := convKey{"a", "c"}
	for i := range 1000 {
		base.add(f.hash(k, "u", fmt.Sprint("base-", i)))
	}
	if f.absent(k, "u", "never") != false {
		t.Fatal("absent said true before base was read")
	}
	f.base.Store(base)
	const n = 3*recentFirst + 100
	for i := range n {
		f.added(k, "u", fmt.Sprint("recent-", i))
	}
	if len(f.recent) < 2 {
		t.Fatalf("recent has %d layer after %d client ids, want it grown past its first (%d)", len(f.recent), n, recentFirst)
	}
	for i := range 1000 {
		if f.absent(k, "u", fmt.Sprint("base-", i)) {
			t.Fatalf("base-%d said absent", i)
		}
	}
	for i := range n {
		if f.absent(k, "u", fmt.Sprint("recent-", i)) {
			t.Fatalf("recent-%d said absent", i)
		}
	}
	// Other client ids, and the same ids of another sender or conversation.
	maybe := 0
	for i := range 100000 {
		if !f.absent(k, "u", fmt.Sprint("other-", i)) {
			maybe++
		}
	}
	for i := range 1000 {
		if !f.absent(k, "v", fmt.Sprint("base-", i)) || !f.absent(convKey{"a", "d"}, "u", fmt.Sprint("recent-", i)) {
			maybe++
		}
	}
	if rate := float64(maybe) / 101000; rate > 0.02 {
		t.Fatalf("%.2f %% of client ids never given said maybe there, want under 2 %%", 100*rate)
	}
}

// The start-up read goes through the index a chunk at a time, each
// after the last key of the one before: it reads every stored client
// id once, whatever the chunks' bounds fall on.
func TestReadClientIDsInChunks(t *testing.T) {
	defer func(n int) { clientFilterChunk = n }(clientFilterChunk)
	clientFilterChunk = 3
	db := NewDB(filepath.Join(t.TempDir(), "tidings.db"))
	if err := db.Open(); err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	type key struct{ app, conv, sender, clientID string }
	var keys []key
	for _, app := range []string{"a", "b"} {
		for _, conv := range []string{"c", "c2"} {
			for _, sender := range []string{"u", "v", "w"} {
				for _, id := range []string{"m1", "m2"} {
					keys = append(keys, key{app, conv, sender, id})
				}
			}
		}
	}
	err := db.update(context.Background(), func(tx *Tx) error {
		for i, k := range keys {
			if _, err := tx.exec(`INSERT INTO messages (app_id, conversation_id, seq, id, sender_id, client_id, parts, sent_at)
				VALUES (?, ?, ?, ?, ?, ?, '[]', 0)`, k.app, k.conv, i+1, fmt.Sprint("id", i), k.sender, k.clientID); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	f := newClientFilter()
	b, err := db.readClientIDs(context.Background(), f)
	if err != nil {
		t.Fatal(err)
	}
	if b.n != len(keys) {
		t.Fatalf("read %d client ids, want the %d stored, each once", b.n, len(keys))
	}
	for _, k := range keys {
		if !b.has(f.hash(convKey{k.app, k.conv}, k.sender, k.clientID)) {
			t.Errorf("%+v not read", k)
		}
	}
}
