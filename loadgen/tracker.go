package loadgen

import "math/bits"

// bitset is a growable set of small non-negative integers.
type bitset []uint64

// add inserts i and reports whether it was already there.
func (b *bitset) add(i int) (had bool) {
	w := i / 64
	if w >= len(*b) {
		*b = append(*b, make([]uint64, w-len(*b)+1+len(*b)/4)...)
	}
	m := uint64(1) << (i % 64)
	had = (*b)[w]&m != 0
	(*b)[w] |= m
	return had
}

func (b bitset) has(i int) bool {
	w := i / 64
	return w < len(b) && b[w]&(uint64(1)<<(i%64)) != 0
}

// count returns the number of members.
func (b bitset) count() int {
	n := 0
	for _, w := range b {
		n += bits.OnesCount64(w)
	}
	return n
}

// andNotCount counts the members of b that are not in o.
func (b bitset) andNotCount(o bitset) int {
	n := 0
	for i, w := range b {
		if i < len(o) {
			w &^= o[i]
		}
		n += bits.OnesCount64(w)
	}
	return n
}

// Tracker checks what one receiver got against what was sent: each
// message is named by its sender (0…) and the sender's sequence number
// (1…); each update also carries its ref, which must grow. A Tracker is
// used by one goroutine at a time.
type Tracker struct {
	got        []bitset // per sender
	prefix     []int    // per sender, a known Contiguous
	lastRef    int64
	Received   int64 // messages received, duplicates included
	Duplicates int64 // messages received more than once
	OutOfOrder int64 // updates whose ref was not above the previous one
}

// Observe records the receipt of message seq of sender in the update ref
// (0 when unknown); it reports whether the message is a duplicate.
func (t *Tracker) Observe(sender, seq int, ref int64) (dup bool) {
	if ref > 0 {
		if ref <= t.lastRef {
			t.OutOfOrder++
		}
		t.lastRef = ref
	}
	for sender >= len(t.got) {
		t.got = append(t.got, nil)
	}
	t.Received++
	if t.got[sender].add(seq) {
		t.Duplicates++
		return true
	}
	return false
}

// LastRef returns the ref of the last update observed.
func (t *Tracker) LastRef() int64 { return t.lastRef }

// Missing counts the messages in expected (per sender, the sequence
// numbers that the server acknowledged) that were not received.
func (t *Tracker) Missing(expected []bitset) int64 {
	var n int64
	for s, exp := range expected {
		var got bitset
		if s < len(t.got) {
			got = t.got[s]
		}
		n += int64(exp.andNotCount(got))
	}
	return n
}

// Has reports whether message seq of sender was received.
func (t *Tracker) Has(sender, seq int) bool {
	return sender < len(t.got) && t.got[sender].has(seq)
}

// Contiguous returns the highest n such that messages 1…n of sender were
// all received.
func (t *Tracker) Contiguous(sender int) int {
	for sender >= len(t.prefix) {
		t.prefix = append(t.prefix, 0)
	}
	n := t.prefix[sender]
	for t.Has(sender, n+1) {
		n++
	}
	t.prefix[sender] = n
	return n
}
