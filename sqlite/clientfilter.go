package sqlite

import (
	"context"
	"database/sql"
	"fmt"
	"hash/maphash"
	"math/bits"
	"sync/atomic"
	"time"
)

// The client-id filter: a send's client id, new, is known new without a
// read of messages.
//
// A send with a client id looks for an earlier message its sender sent
// with it (idempotency, docs/protocol.md): in the journal's memory, then
// in messages_by_client_id. That look-up was a statement per send in the
// writer, the largest of a send's (7 % of the server's CPU at saturation
// in rooms of 5, 6 % in 1:1 rooms: docs/benchmarks.md, "A client id known
// new without a read"), for an answer that is almost always "none".
//
// clientFilter is a Bloom filter of the client ids in messages: what it
// says is absent is absent, what it says may be there is looked for as
// before. It is two parts:
//
//   - base holds the client ids messages held when the database opened. A
//     goroutine reads them from messages_by_client_id after Open, in
//     chunks of read transactions of their own (a long read would hold
//     the WAL from starting again), and publishes the filter once it has
//     read them all. Until then every send looks in the index, as
//     before. Rows only come into messages after Open through the
//     writer's sends, which recent holds, so any read after Open sees all
//     those base needs, whatever moves meanwhile.
//   - recent holds the client ids of the sends since Open, added by the
//     writer when a send stores its message (a send rolled back leaves
//     its id: the filter then says "maybe", which costs a look-up, never
//     a wrong answer). Its layers double in size as they fill, so that it
//     needs no rebuild.
//
// A message deleted leaves its bits: a look-up more, no wrong answer.
// Each layer uses about 10 to 20 bits per client id (its size is rounded
// up to a power of two) and 7 probes: under 1 % of new client ids are
// looked for in the index.
type clientFilter struct {
	seed maphash.Seed
	// base is nil until its goroutine has read messages (then any
	// goroutine may read it; nobody changes it).
	base atomic.Pointer[bloom]
	// recent: the writer's only.
	recent []*bloom
	// built is closed when the base goroutine is done (base published,
	// or failed); stop ends it early.
	built, stop chan struct{}
}

// bloom is one Bloom filter of a fixed capacity.
type bloom struct {
	words    []uint64
	mask     uint64 // bit count - 1 (a power of two)
	capacity int
	n        int
}

// How a send's client id was checked (the by label of
// tidings_store_client_id_checks_total).
const (
	clientIDByFilter = "filter"
	clientIDByIndex  = "index"
)

// bloomProbes is the number of bits a client id sets in a bloom;
// bloomBitsPerID the bits a bloom holds per client id of its capacity,
// before rounding up; recentFirst the capacity of recent's first layer.
const (
	bloomProbes    = 7
	bloomBitsPerID = 10
	recentFirst    = 1 << 16
)

func newBloom(capacity int) *bloom {
	capacity = max(capacity, 1024)
	nbits := uint64(1) << bits.Len64(uint64(capacity*bloomBitsPerID-1))
	return &bloom{words: make([]uint64, nbits/64), mask: nbits - 1, capacity: capacity}
}

func (b *bloom) add(h uint64) {
	h1, h2 := h, bits.RotateLeft64(h, 32)|1
	for i := uint64(0); i < bloomProbes; i++ {
		bit := (h1 + i*h2) & b.mask
		b.words[bit/64] |= 1 << (bit % 64)
	}
	b.n++
}

func (b *bloom) has(h uint64) bool {
	h1, h2 := h, bits.RotateLeft64(h, 32)|1
	for i := uint64(0); i < bloomProbes; i++ {
		bit := (h1 + i*h2) & b.mask
		if b.words[bit/64]&(1<<(bit%64)) == 0 {
			return false
		}
	}
	return true
}

func newClientFilter() *clientFilter {
	return &clientFilter{seed: maphash.MakeSeed(), recent: []*bloom{newBloom(recentFirst)},
		built: make(chan struct{}), stop: make(chan struct{})}
}

// hash hashes a client id with what makes it unique: its app,
// conversation and sender.
func (f *clientFilter) hash(k convKey, sender, clientID string) uint64 {
	var h maphash.Hash
	h.SetSeed(f.seed)
	h.WriteString(k.app)
	h.WriteByte(0)
	h.WriteString(k.conv)
	h.WriteByte(0)
	h.WriteString(sender)
	h.WriteByte(0)
	h.WriteString(clientID)
	return h.Sum64()
}

// added records a client id the writer stored a message with. Writer
// only.
func (f *clientFilter) added(k convKey, sender, clientID string) {
	last := f.recent[len(f.recent)-1]
	if last.n >= last.capacity {
		last = newBloom(2 * last.capacity)
		f.recent = append(f.recent, last)
	}
	last.add(f.hash(k, sender, clientID))
}

// absent says whether no message of messages has this client id (of
// this sender in this conversation): false when it may have one, or
// while base is not read yet. Writer only.
func (f *clientFilter) absent(k convKey, sender, clientID string) bool {
	base := f.base.Load()
	if base == nil {
		return false
	}
	h := f.hash(k, sender, clientID)
	if base.has(h) {
		return false
	}
	for _, b := range f.recent {
		if b.has(h) {
			return false
		}
	}
	return true
}

// clientFilterChunk is how many client ids base's goroutine reads per
// read transaction.
const clientFilterChunk = 20000

// buildBase reads the client ids of messages into base and publishes it,
// then closes built. It runs in a goroutine of its own from Open; a
// failure leaves base nil (every send looks in the index) and is logged.
func (db *DB) buildBase(f *clientFilter) {
	defer close(f.built)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		select {
		case <-f.stop:
			cancel()
		case <-ctx.Done():
		}
	}()
	if db.clientIDsHold != nil { // tests: sends and moves before the read
		select {
		case <-db.clientIDsHold:
		case <-ctx.Done():
			return
		}
	}
	start := time.Now()
	b, err := db.readClientIDs(ctx, f)
	if err != nil {
		if ctx.Err() == nil {
			db.Logger.Error("could not read the client ids of the stored messages: every send with a client id looks for it in the database", "err", err)
		}
		return
	}
	f.base.Store(b)
	db.Logger.Debug("read the client ids of the stored messages", "ids", b.n, "took", time.Since(start))
}

// clientIDsFirst reads the first client ids of messages, in key order;
// clientIDsAfter those after one (a chunk of readClientIDs). Both read
// the index alone, from where they start (TestClientIDsReadTheIndex).
const (
	clientIDsFirst = `SELECT app_id, conversation_id, sender_id, client_id
		FROM messages INDEXED BY messages_by_client_id WHERE client_id IS NOT NULL
		ORDER BY app_id, conversation_id, sender_id, client_id LIMIT ?`
	clientIDsAfter = `SELECT app_id, conversation_id, sender_id, client_id
		FROM messages INDEXED BY messages_by_client_id
		WHERE client_id IS NOT NULL AND (app_id, conversation_id, sender_id, client_id) > (?, ?, ?, ?)
		ORDER BY app_id, conversation_id, sender_id, client_id LIMIT ?`
)

// readClientIDs counts the client ids of messages, then reads them into
// a bloom of that capacity, clientFilterChunk at a time, in key order.
func (db *DB) readClientIDs(ctx context.Context, f *clientFilter) (*bloom, error) {
	var count int
	if err := db.read.QueryRowContext(ctx, `SELECT count(*) FROM messages INDEXED BY messages_by_client_id WHERE client_id IS NOT NULL`).Scan(&count); err != nil {
		return nil, fmt.Errorf("count: %w", err)
	}
	// Room for what a long outage of this goroutine's reads may have
	// missed in the count: none is missed, but a fuller bloom says
	// "maybe" more often.
	b := newBloom(count + count/4)
	var app, conv, sender, clientID string
	for first := true; ; first = false {
		var rows *sql.Rows
		var err error
		if first {
			rows, err = db.read.QueryContext(ctx, clientIDsFirst, clientFilterChunk)
		} else {
			rows, err = db.read.QueryContext(ctx, clientIDsAfter, app, conv, sender, clientID, clientFilterChunk)
		}
		if err != nil {
			return nil, err
		}
		n := 0
		for rows.Next() {
			if err := rows.Scan(&app, &conv, &sender, &clientID); err != nil {
				rows.Close()
				return nil, err
			}
			b.add(f.hash(convKey{app, conv}, sender, clientID))
			n++
		}
		err = rows.Err()
		rows.Close()
		if err != nil {
			return nil, err
		}
		if n < clientFilterChunk {
			return b, nil
		}
	}
}
