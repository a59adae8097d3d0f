package sqlite

import (
	"context"
	"fmt"
	"hash/maphash"
	"math/bits"
	"strings"
	"sync"
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
//   - base holds the client ids messages held when it was read. A
//     goroutine reads them from messages_by_client_id after Open, in
//     chunks of read transactions of their own (a long read would hold
//     the WAL from starting again), and publishes the filter once it has
//     read them all. Until then every send looks in the index, as
//     before. Users' messages only come into messages through the
//     writer's moves of the journal's messages, whose client ids recent
//     holds, so any read after Open sees all those base needs, whatever
//     moves meanwhile. (System messages, stored straight into messages,
//     are looked for by their own path. Like the journal, the filter
//     takes this process for the only server writing the file.)
//   - recent holds the client ids of the sends since, added by the writer
//     when a send stores its message (a send rolled back leaves its id:
//     the filter then says "maybe", which costs a look-up, never a wrong
//     answer). Its layers double in size as they fill.
//
// So that its memory follows the messages stored, not the sends since
// Open, the filter is read again once recent holds more client ids than
// base (and at least rebuildFrom): the writer starts a next recent, with
// the client ids the journal holds then (they may move before the read
// reaches them) and the sends' from then on, and a goroutine reads a next
// base; once it is read, the writer drops the old two. Meanwhile recent
// still gets every client id, so the old two stay whole.
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
	// next and nextBase: a read again under way. next is the writer's
	// only (nil: none under way); nextBase, published by the read.
	next     []*bloom
	nextBase atomic.Pointer[bloom]
	// rebuildFrom: recent's size from which the filter is read again
	// (rebuildFrom; tests set less); reads counts the reads started.
	rebuildFrom int
	reads       int
	// reading counts the goroutines reading messages; ctx ends them
	// (cancel).
	reading sync.WaitGroup
	ctx     context.Context
	cancel  context.CancelFunc
}

// bloom is one Bloom filter of a fixed capacity, blocked: a client id's
// bits are all in one block of eight words (64 bytes, a cache line), one
// bit in each word, so that an add or a look reads one line of memory
// where seven probes over the whole filter read seven. With 10 million
// ids (16 MiB) those misses were a quarter of the start-up read.
type bloom struct {
	words    []uint64
	mask     uint64 // block count - 1 (a power of two)
	capacity int
	n        int
}

// How a send's client id was checked (the by label of
// tidings_store_client_id_checks_total).
const (
	clientIDByFilter = "filter"
	clientIDByIndex  = "index"
)

// bloomBitsPerID is the bits a bloom holds per client id of its
// capacity, before rounding up; bloomBlock the words of a block, each
// of which a client id sets one bit in; recentFirst the capacity of
// recent's first layer.
const (
	bloomBitsPerID = 10
	bloomBlock     = 8
	recentFirst    = 1 << 16
)

func newBloom(capacity int) *bloom {
	capacity = max(capacity, 1024)
	nbits := uint64(1) << bits.Len64(uint64(capacity*bloomBitsPerID-1))
	blocks := nbits / (64 * bloomBlock)
	return &bloom{words: make([]uint64, blocks*bloomBlock), mask: blocks - 1, capacity: capacity}
}

// block is the block of h, and the bits it sets: the block from h's low
// bits, the bit of each word from six bits each of the high 48 of h
// multiplied by an odd constant, which mixes all of h into them.
func (b *bloom) block(h uint64) ([]uint64, uint64) {
	i := (h & b.mask) * bloomBlock
	return b.words[i : i+bloomBlock : i+bloomBlock], (h * 0x9e3779b97f4a7c15) >> 16
}

func (b *bloom) add(h uint64) {
	w, p := b.block(h)
	for i := range w {
		w[i] |= 1 << (p >> (6 * i) & 63)
	}
	b.n++
}

func (b *bloom) has(h uint64) bool {
	w, p := b.block(h)
	for i := range w {
		if w[i]&(1<<(p>>(6*i)&63)) == 0 {
			return false
		}
	}
	return true
}

func newClientFilter() *clientFilter {
	f := &clientFilter{seed: maphash.MakeSeed(), recent: []*bloom{newBloom(recentFirst)}, rebuildFrom: rebuildFrom}
	f.ctx, f.cancel = context.WithCancel(context.Background())
	return f
}

// rebuildFrom is the least number of client ids recent holds before the
// filter is read again (when it also holds more than base).
const rebuildFrom = 1 << 20

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

// hashKey is hash of a key whose parts are each followed by a zero byte
// but the last, as clientIDsAfter reads them.
func (f *clientFilter) hashKey(key string) uint64 {
	var h maphash.Hash
	h.SetSeed(f.seed)
	h.WriteString(key)
	return h.Sum64()
}

// added records a client id the writer stored a message with. Writer
// only.
func (f *clientFilter) added(k convKey, sender, clientID string) {
	h := f.hash(k, sender, clientID)
	f.recent = addLayered(f.recent, h)
	if f.next != nil {
		f.next = addLayered(f.next, h)
	}
}

// addLayered adds h to the last of layers, or to a new one twice its size
// once it is full.
func addLayered(layers []*bloom, h uint64) []*bloom {
	last := layers[len(layers)-1]
	if last.n >= last.capacity {
		last = newBloom(2 * last.capacity)
		layers = append(layers, last)
	}
	last.add(h)
	return layers
}

// absent says whether no message of messages has this client id (of
// this sender in this conversation): false when it may have one, or
// while base is not read yet. Writer only.
func (f *clientFilter) absent(k convKey, sender, clientID string) bool {
	f.switchToNext()
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

// switchToNext drops base and recent for the next ones once the next base
// is read. Writer only.
func (f *clientFilter) switchToNext() {
	if f.next == nil {
		return
	}
	b := f.nextBase.Load()
	if b == nil {
		return
	}
	f.base.Store(b)
	f.recent, f.next = f.next, nil
	f.nextBase.Store(nil)
}

// full says whether recent holds enough client ids that the filter
// should be read again, and none is under way. Writer only.
func (f *clientFilter) full() bool {
	if f.next != nil {
		return false
	}
	base := f.base.Load()
	if base == nil {
		return false // the first read is under way
	}
	n := 0
	for _, b := range f.recent {
		n += b.n
	}
	return n >= f.rebuildFrom && n > base.n
}

// readAgain starts a read again of the client ids of messages (see
// clientFilter): from now on the sends' client ids also go to a next
// recent, which first gets those of the journal (committed, and of the
// open transaction). Writer only, in a transaction.
func (db *DB) readAgain(f *clientFilter) {
	f.next = []*bloom{newBloom(recentFirst)}
	j := db.journal
	for ck := range j.clients {
		f.next = addLayered(f.next, f.hash(ck.convKey, ck.sender, ck.clientID))
	}
	for _, r := range j.txn {
		if r.clientID != "" {
			f.next = addLayered(f.next, f.hash(r.key, r.sender, r.clientID))
		}
	}
	f.reads++
	f.reading.Add(1)
	go db.readBase(f, &f.nextBase)
}

// clientFilterChunk is how many client ids base's goroutine reads per
// read transaction.
var clientFilterChunk = 20000 // tests set less

// readRetry is how long the filter waits to read messages again after a
// read failed.
const readRetry = time.Minute

// readBase reads the client ids of messages into a bloom and publishes
// it in to. It runs in a goroutine of its own until it has, or the
// filter stops; a failed read is logged and tried again readRetry later
// (meanwhile sends look in the index, or the filter it should replace
// goes on).
func (db *DB) readBase(f *clientFilter, to *atomic.Pointer[bloom]) {
	defer f.reading.Done()
	ctx := f.ctx
	if db.clientIDsHold != nil { // tests: sends and moves before the read
		select {
		case <-db.clientIDsHold:
		case <-ctx.Done():
			return
		}
	}
	start := time.Now()
	b, err := db.readClientIDs(ctx, f)
	for err != nil {
		if ctx.Err() != nil {
			return
		}
		db.Logger.Error("could not read the client ids of the stored messages, tried again in a minute: meanwhile sends with a client id look for it in the database", "err", err)
		select {
		case <-time.After(readRetry):
		case <-ctx.Done():
			return
		}
		b, err = db.readClientIDs(ctx, f)
	}
	to.Store(b)
	db.Logger.Debug("read the client ids of the stored messages", "ids", b.n, "took", time.Since(start))
}

// startClientFilter makes the client-id filter and starts its first
// read; Open calls it once the journal is empty, before the writer
// starts.
func (db *DB) startClientFilter() {
	f := newClientFilter()
	if db.clientIDsRebuildFrom > 0 {
		f.rebuildFrom = db.clientIDsRebuildFrom
	}
	db.clientIDs = f
	f.reading.Add(1)
	go db.readBase(f, &f.base)
}

// stopClientFilter ends the filter's reads and waits for them.
func (db *DB) stopClientFilter() {
	db.clientIDs.cancel()
	db.clientIDs.reading.Wait()
}

// clientIDsAfter reads the client ids of messages after a key, in key
// order (a chunk of readClientIDs; the first chunk starts after four
// empty strings, before any app's id). It reads the index alone, from
// where it starts (TestClientIDsReadTheIndex). Each row is one column,
// the key's four parts each followed by a zero byte but the last (what
// hash hashes): each column read through the driver takes SQLite's
// mutex twice and makes a string, and with four columns that was half
// the read's time (10 million ids in 16 to 25 s).
const clientIDsAfter = `SELECT app_id || char(0) || conversation_id || char(0) || sender_id || char(0) || client_id
	FROM messages INDEXED BY messages_by_client_id
	WHERE client_id IS NOT NULL AND (app_id, conversation_id, sender_id, client_id) > (?, ?, ?, ?)
	ORDER BY app_id, conversation_id, sender_id, client_id LIMIT ?`

// readClientIDs counts the client ids of messages, then reads them into
// a bloom of that capacity, clientFilterChunk at a time, in key order.
func (db *DB) readClientIDs(ctx context.Context, f *clientFilter) (*bloom, error) {
	var count int
	if err := db.read.QueryRowContext(ctx, `SELECT count(*) FROM messages INDEXED BY messages_by_client_id WHERE client_id IS NOT NULL`).Scan(&count); err != nil {
		return nil, fmt.Errorf("count: %w", err)
	}
	// Room for the rows moved into messages while it reads, which it
	// may read too: a fuller bloom says "maybe" more often.
	b := newBloom(count + count/4)
	var after [4]string // the last key read
	for {
		rows, err := db.read.QueryContext(ctx, clientIDsAfter, after[0], after[1], after[2], after[3], clientFilterChunk)
		if err != nil {
			return nil, err
		}
		n := 0
		var key string
		for rows.Next() {
			if err := rows.Scan(&key); err != nil {
				rows.Close()
				return nil, err
			}
			b.add(f.hashKey(key))
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
		parts := strings.SplitN(key, "\x00", 4)
		if len(parts) != 4 || [4]string(parts) == after {
			// A part with a zero byte in it (ids are checked for none).
			return nil, fmt.Errorf("client id key %q: not four parts after the last", key)
		}
		after = [4]string(parts)
	}
}
