package sqlite

import "testing"

// A read during which marks are dropped, having been written, is read
// again: it may have read the file before they were written and looked
// for them after they were dropped. Dropped at every try, it gives up.
func TestUnwrittenReadAgainAfterADrop(t *testing.T) {
	k := convKey{"a", "c"}
	u := newUnwritten()
	m := marks{k: {seq: 5, senders: map[string]int64{"bob": 4}}}
	u.add(m, 10)
	tries := 0
	counted, err := u.read(func(l *unwrittenLookup) error {
		tries++
		if tries == 1 {
			u.written(10) // the writer drops them between the read of the file and the lookups
		}
		if last, read := l.lastSeq(k, 3), l.readSeq(k, "bob", 2); tries == 2 && (last != 3 || read != 2) {
			t.Errorf("after the drop: last seq %d, bob's read seq %d; want the stored 3 and 2", last, read)
		}
		return nil
	})
	if !counted || err != nil || tries != 2 {
		t.Fatalf("counted %v, err %v after %d tries; want counted after 2", counted, err, tries)
	}

	u.add(m, 10)
	var last, read int64
	if _, err := u.read(func(l *unwrittenLookup) error {
		last, read = l.lastSeq(k, 3), l.readSeq(k, "bob", 2)
		return nil
	}); err != nil || last != 5 || read != 4 {
		t.Fatalf("last seq %d, bob's read seq %d (%v); want the unwritten 5 and 4", last, read, err)
	}

	tries = 0
	counted, err = u.read(func(l *unwrittenLookup) error {
		tries++
		u.add(m, int64(10+tries))
		u.written(int64(10 + tries))
		return nil
	})
	if counted || err != nil {
		t.Fatalf("counted %v, err %v with a drop at each of %d tries; want it to give up", counted, err, tries)
	}
}
