package main

import (
	"context"
	"log/slog"
	"runtime/debug"
	"runtime/metrics"
	"time"
)

// trimMemory gives the memory of a burst back to the system once the
// server is quiet again: every `every`, when less than an eighth of the
// live heap was allocated since the last look (a server with work to do
// allocates far more) and at least half the live heap (16 MiB at least)
// is garbage or free pages still held, it collects and returns the free
// pages (debug.FreeOSMemory).
//
// Without it, what a burst of connects left behind stays resident: the
// collector lets the heap grow to twice what is live before it collects,
// and keeps the pages of that growth for the next one, so a server holding
// thousands of idle connections held about twice their live memory. A
// trim costs one collection, on a server that is otherwise quiet.
func trimMemory(ctx context.Context, every time.Duration, log *slog.Logger) {
	t := time.NewTicker(every)
	defer t.Stop()
	s := []metrics.Sample{
		{Name: "/gc/heap/allocs:bytes"},
		{Name: "/gc/heap/live:bytes"},
		{Name: "/memory/classes/heap/objects:bytes"},
		{Name: "/memory/classes/heap/free:bytes"},
	}
	metrics.Read(s)
	last := s[0].Value.Uint64()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		metrics.Read(s)
		allocs, live := s[0].Value.Uint64(), s[1].Value.Uint64()
		objects, free := s[2].Value.Uint64(), s[3].Value.Uint64()
		since := allocs - last
		last = allocs
		if !trimDue(since, live, objects, free) {
			continue
		}
		start := time.Now()
		debug.FreeOSMemory()
		metrics.Read(s)
		last = s[0].Value.Uint64()
		log.Info("memory trimmed", "live", live, "held_before", objects+free,
			"held_after", s[2].Value.Uint64()+s[3].Value.Uint64(), "took", time.Since(start))
	}
}

// trimDue says whether a trim is worth it: allocated bytes since the last
// look, the live heap (as of the last collection), the heap's objects
// (live or not yet collected) and its free pages not yet returned.
func trimDue(allocated, live, objects, free uint64) bool {
	held := objects + free
	if held <= live {
		return false
	}
	return allocated < live/8 && held-live >= max(16<<20, live/2)
}
