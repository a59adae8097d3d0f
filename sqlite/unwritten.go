package sqlite

import (
	"sync"
	"sync/atomic"
)

// unwritten holds, for readers, the marks of committed sends that the
// send cache has not written yet (see sendCache): each conversation's
// last seq and each sender's read mark, with the newest event that set
// them. A reader that needs them adds them to what it read instead of
// asking for them to be written first (DB.syncMarks), which would cost a
// write of every waiting mark: the push dispatcher asks for unread counts
// after almost every message once members are offline, and with a flush
// per ask the marks were written once per commit again.
//
// The writer adds the marks of a transaction once it has committed, and
// removes those that committed transactions have written when a whole
// round of them is written (a flush of all, or the last chunk of a plan),
// after which it moves the round: a reader that read the database before
// such a removal and this after it would miss the marks removed, so it
// reads the round before the database and again after this, and reads
// again if it moved (read).
//
// Values only grow: an entry kept after its mark was written holds no more
// than the database does, and a reader takes the larger of the two.
type unwritten struct {
	mu    sync.RWMutex
	convs map[convKey]unwrittenMark
	// senders: by conversation, by user.
	senders map[convKey]map[string]unwrittenMark
	round   atomic.Uint64
	// tries: how many reads read gives (tests set fewer).
	tries int
}

// unwrittenMark is a seq (and for a conversation, its activity time in
// microseconds), and the newest event of the sends that set them.
type unwrittenMark struct{ seq, activity, through int64 }

func newUnwritten() *unwritten {
	return &unwritten{convs: map[convKey]unwrittenMark{}, senders: map[convKey]map[string]unwrittenMark{}, tries: 4}
}

// add adds the marks of committed sends (the writer's, after a commit).
func (u *unwritten) add(m marks, through int64) {
	if m.empty() {
		return
	}
	u.mu.Lock()
	defer u.mu.Unlock()
	for k, cm := range m {
		u.convs[k] = grow(u.convs[k], cm.seq, cm.activity, through)
		us := u.senders[k]
		if us == nil && len(cm.senders) > 0 {
			us = map[string]unwrittenMark{}
			u.senders[k] = us
		}
		for user, seq := range cm.senders {
			us[user] = grow(us[user], seq, 0, through)
		}
	}
}

func grow(m unwrittenMark, seq, activity, through int64) unwrittenMark {
	return unwrittenMark{seq: max(m.seq, seq), activity: max(m.activity, activity), through: max(m.through, through)}
}

// written removes the marks set by sends up to event through, which
// committed transactions have written, and moves the round.
func (u *unwritten) written(through int64) {
	u.mu.Lock()
	removed := false
	for k, m := range u.convs {
		if m.through <= through {
			delete(u.convs, k)
			removed = true
		}
	}
	for k, us := range u.senders {
		for user, m := range us {
			if m.through <= through {
				delete(us, user)
				removed = true
			}
		}
		if len(us) == 0 {
			delete(u.senders, k)
		}
	}
	u.mu.Unlock()
	if removed {
		u.round.Add(1)
	}
}

// has says whether conversation k has marks not written.
func (u *unwritten) has(k convKey) bool {
	u.mu.RLock()
	defer u.mu.RUnlock()
	_, ok := u.convs[k]
	return ok
}

// appConvs returns the conversations of app that have marks not written.
func (u *unwritten) appConvs(app string) []convKey {
	u.mu.RLock()
	defer u.mu.RUnlock()
	var keys []convKey
	for k := range u.convs {
		if k.app == app {
			keys = append(keys, k)
		}
	}
	return keys
}

// forget removes the marks of conversations convs, which a transaction
// that has committed wrote, and moves the round if it removed any.
func (u *unwritten) forget(convs map[convKey]bool) {
	u.mu.Lock()
	removed := false
	for k := range convs {
		if _, ok := u.convs[k]; ok {
			delete(u.convs, k)
			removed = true
		}
		if _, ok := u.senders[k]; ok {
			delete(u.senders, k)
			removed = true
		}
	}
	u.mu.Unlock()
	if removed {
		u.round.Add(1)
	}
}

// read runs fn, which reads the database and then calls the lookup it is
// given for the marks not written yet, until no round of them was written
// while it ran (see unwritten). It gives up after a few tries and reports
// false: the caller then asks for the marks to be written and reads again.
func (u *unwritten) read(fn func(lookup *unwrittenLookup) error) (bool, error) {
	for range u.tries {
		round := u.round.Load()
		l := &unwrittenLookup{u: u}
		err := fn(l)
		if l.locked {
			u.mu.RUnlock()
		}
		if err != nil {
			return true, err
		}
		if u.round.Load() == round {
			return true, nil
		}
	}
	return false, nil
}

// unwrittenLookup looks marks up for one try of unwritten.read, under
// one hold of the read lock.
type unwrittenLookup struct {
	u      *unwritten
	locked bool
}

func (l *unwrittenLookup) lock() {
	if !l.locked {
		l.u.mu.RLock()
		l.locked = true
	}
}

// lastSeq is conversation k's last seq: the larger of stored and the
// unwritten one.
func (l *unwrittenLookup) lastSeq(k convKey, stored int64) int64 {
	l.lock()
	return max(stored, l.u.convs[k].seq)
}

// activity is conversation k's last activity time, in microseconds: the
// later of stored and the unwritten one.
func (l *unwrittenLookup) activity(k convKey, stored int64) int64 {
	l.lock()
	return max(stored, l.u.convs[k].activity)
}

// readSeq is user's read mark in conversation k: the larger of stored and
// the unwritten one.
func (l *unwrittenLookup) readSeq(k convKey, user string, stored int64) int64 {
	l.lock()
	return max(stored, l.u.senders[k][user].seq)
}
