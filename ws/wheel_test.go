package ws

import (
	"testing"
	"time"
)

// The heartbeat's schedule, on a clock of its own: a connection that
// stops answering is pinged after PingInterval of quiet and closed after
// PingInterval+PongTimeout, never before and at most one tick late; one
// that answers is pinged once a PingInterval and kept; one that talks is
// never pinged.
func TestHeartbeatScheduleClosesDeadPeersInTime(t *testing.T) {
	for _, pi := range []time.Duration{25 * time.Second, 3 * time.Second, 200 * time.Millisecond} {
		h := &Handler{PingInterval: pi, PongTimeout: 10 * time.Second}
		if pi < time.Second {
			h.PongTimeout = time.Second
		}
		start := time.Date(2026, 12, 2, 0, 0, 0, 123456789, time.UTC).UnixNano()
		w := newPingWheel(h.PingInterval, h.PongTimeout, start)
		maxLate := int64(min(time.Second, pi/2)) // the heartbeat's bound before the wheel

		dead, answers, talks := &conn{}, &conn{}, &conn{}
		for _, c := range []*conn{dead, answers, talks} {
			c.lastSeen.Store(start)
			c.lastPing.Store(start)
			w.add(c, start+int64(pi)+1)
		}
		pings := map[*conn][]int64{}
		var goneAt int64
		var taken []*conn
		end := start + 10*int64(pi+h.PongTimeout)
		for now := start + w.wait(start).Nanoseconds(); now < end; now += w.wait(now).Nanoseconds() {
			if (now-start)%(int64(pi)/3) < w.width {
				talks.lastSeen.Store(now) // a command now and then
			}
			taken = w.take(now, taken[:0])
			if w.wait(now) <= 0 {
				t.Fatal("the next slot ends now")
			}
			for _, c := range taken {
				if c.slot != 0 {
					t.Fatal("a connection taken is still in the wheel")
				}
				at, ping, gone := h.nextLook(c, now)
				if at <= now {
					t.Fatalf("next look at %d, not after now %d", at, now)
				}
				switch {
				case gone:
					if c != dead {
						t.Fatalf("pi %v: a live connection was found dead", pi)
					}
					if goneAt == 0 {
						goneAt = now
					}
				case ping:
					c.lastPing.Store(now)
					pings[c] = append(pings[c], now)
					if c == answers {
						answers.lastSeen.Store(now + int64(time.Millisecond)) // the pong
					}
				}
				w.add(c, at)
			}
		}
		deadline := start + int64(pi+h.PongTimeout)
		if goneAt <= deadline || goneAt > deadline+maxLate {
			t.Errorf("pi %v: the dead peer was found dead %v after its last frame, want in (%v, %v]",
				pi, time.Duration(goneAt-start), pi+h.PongTimeout, pi+h.PongTimeout+time.Duration(maxLate))
		}
		if p := pings[dead]; len(p) == 0 || p[0] <= start+int64(pi) || p[0] > start+int64(pi)+maxLate {
			t.Errorf("pi %v: the dead peer's pings %v, want the first in (%v, %v] after its last frame", pi, p, pi, pi+time.Duration(maxLate))
		}
		if n, least := int64(len(pings[answers])), (end-start)/(int64(pi)+2*maxLate)-1; n < least || n > (end-start)/int64(pi) {
			t.Errorf("pi %v: the answering peer was pinged %d times in %v, want one a ping interval", pi, n, time.Duration(end-start))
		}
		if p := pings[answers]; len(p) > 1 {
			for i := 1; i < len(p); i++ {
				if d := p[i] - p[i-1]; d <= int64(pi) || d > int64(pi)+2*maxLate {
					t.Fatalf("pi %v: pings %v apart", pi, time.Duration(d))
				}
			}
		}
		if n := len(pings[talks]); n != 0 {
			t.Errorf("pi %v: a connection that talks was pinged %d times", pi, n)
		}
	}
}

func TestPingWheelRemove(t *testing.T) {
	const now = int64(1e18)
	w := newPingWheel(25*time.Second, 10*time.Second, now)
	cs := make([]*conn, 5)
	for i := range cs {
		cs[i] = &conn{}
		w.add(cs[i], now+int64(time.Second))
	}
	w.remove(cs[1])
	w.remove(cs[1]) // twice: nothing
	w.remove(cs[4])
	got := w.take(now+int64(2*time.Second), nil)
	if len(got) != 3 {
		t.Fatalf("took %d connections, want 3", len(got))
	}
	for _, c := range got {
		if c == cs[1] || c == cs[4] {
			t.Fatal("a removed connection was taken")
		}
	}
	// A long pause takes every slot once, late ones too.
	w.add(cs[1], now+int64(20*time.Second))
	if got := w.take(now+int64(time.Hour), nil); len(got) != 1 || got[0] != cs[1] {
		t.Fatalf("after a pause: took %v", got)
	}
}
