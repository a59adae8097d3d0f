package realtime

import (
	"iter"
	"slices"
)

// convSubs are the sessions subscribed to a conversation on this node,
// each with the seq from which the conversation is theirs. Most
// conversations have one session on a node, or a few: they are a slice
// while at most convSubsFew, a map past it (a map of one entry took
// about 190 bytes, an idle connection's largest allocation after its
// transport's). A nil *convSubs has none.
type convSubs struct {
	few  []convSub
	many map[*Session]int64
}

type convSub struct {
	s    *Session
	from int64
}

const convSubsFew = 8

func (c *convSubs) len() int {
	if c == nil {
		return 0
	}
	if c.many != nil {
		return len(c.many)
	}
	return len(c.few)
}

// from returns the seq from which the conversation is s's, and whether s
// is subscribed.
func (c *convSubs) from(s *Session) (int64, bool) {
	if c == nil {
		return 0, false
	}
	if c.many != nil {
		from, ok := c.many[s]
		return from, ok
	}
	for _, e := range c.few {
		if e.s == s {
			return e.from, true
		}
	}
	return 0, false
}

func (c *convSubs) has(s *Session) bool {
	_, ok := c.from(s)
	return ok
}

// add subscribes s from seq from, and reports whether it was not yet.
func (c *convSubs) add(s *Session, from int64) bool {
	if c.has(s) {
		return false
	}
	if c.many == nil && len(c.few) < convSubsFew {
		c.few = append(c.few, convSub{s, from})
		return true
	}
	if c.many == nil {
		c.many = make(map[*Session]int64, 2*convSubsFew)
		for _, e := range c.few {
			c.many[e.s] = e.from
		}
		c.few = nil
	}
	c.many[s] = from
	return true
}

// remove unsubscribes s. A map stays a map once emptied below
// convSubsFew: a large conversation's sessions come and go.
func (c *convSubs) remove(s *Session) {
	if c.many != nil {
		delete(c.many, s)
		return
	}
	if i := slices.IndexFunc(c.few, func(e convSub) bool { return e.s == s }); i >= 0 {
		c.few = slices.Delete(c.few, i, i+1)
	}
}

// all yields each session subscribed with its seq. The caller must not
// subscribe or unsubscribe meanwhile.
func (c *convSubs) all() iter.Seq2[*Session, int64] {
	return func(yield func(*Session, int64) bool) {
		if c == nil {
			return
		}
		if c.many != nil {
			for s, from := range c.many {
				if !yield(s, from) {
					return
				}
			}
			return
		}
		for _, e := range c.few {
			if !yield(e.s, e.from) {
				return
			}
		}
	}
}
