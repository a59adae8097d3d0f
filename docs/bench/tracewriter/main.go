// Command tracewriter summarizes an execution trace of a Tidings server
// (curl -o t.trace 'http://DEBUG-ADDR/debug/pprof/trace?seconds=5'):
//
//   - for each kind of goroutine (named by the function it started in):
//     its time running, in system calls, blocked, and runnable (ready but
//     waiting for a processor), and how many times it was made ready;
//   - the SQLite writer's busy periods (from a wake to its next block),
//     those longer than -long with the time of each region in them
//     (sqlite.job.send, sqlite.moveDue, sqlite.commit...: see
//     sqlite/writer.go's runBatch), and each region's durations.
//
// It is a module of its own, so that the server does not depend on
// golang.org/x/exp:
//
//	cd docs/bench/tracewriter && go run . -long 3ms t.trace
package main

import (
	"flag"
	"fmt"
	"io"
	"log"
	"os"
	"sort"
	"strings"
	"time"

	"golang.org/x/exp/trace"
)

const writerFunc = "github.com/tidings/tidings/sqlite.(*DB).writer"

// goroutine is what the trace says of one goroutine.
type goroutine struct {
	name                                string
	running, syscall, waiting, runnable time.Duration
	wakes                               int
	state                               trace.GoState
	since                               trace.Time
	// the writer's: its system calls, its busy periods, and the current
	// one's start and regions
	syscalls, busy []time.Duration
	busySince      trace.Time
	inBusy         map[string]time.Duration
}

// kind is the goroutines of one name, summed.
type kind struct {
	name                                string
	running, syscall, waiting, runnable time.Duration
	wakes                               int
}

func main() {
	long := flag.Duration("long", 3*time.Millisecond, "print the writer's busy periods longer than this")
	flag.Parse()
	if flag.NArg() != 1 {
		log.Fatal("usage: tracewriter [-long d] TRACE")
	}
	f, err := os.Open(flag.Arg(0))
	if err != nil {
		log.Fatal(err)
	}
	defer f.Close()
	r, err := trace.NewReader(f)
	if err != nil {
		log.Fatal(err)
	}
	gs := map[trace.GoID]*goroutine{}
	regions := map[string][]time.Duration{}
	type open struct {
		name  string
		start trace.Time
	}
	opened := map[trace.GoID][]open{}
	for {
		ev, err := r.ReadEvent()
		if err == io.EOF {
			break
		}
		if err != nil {
			log.Fatal(err)
		}
		switch ev.Kind() {
		case trace.EventRegionBegin:
			opened[ev.Goroutine()] = append(opened[ev.Goroutine()], open{ev.Region().Type, ev.Time()})
			continue
		case trace.EventRegionEnd:
			st := opened[ev.Goroutine()]
			if len(st) == 0 {
				continue
			}
			o := st[len(st)-1]
			opened[ev.Goroutine()] = st[:len(st)-1]
			d := time.Duration(ev.Time() - o.start)
			regions[o.name] = append(regions[o.name], d)
			if g := gs[ev.Goroutine()]; g != nil && g.inBusy != nil {
				g.inBusy[o.name] += d
			}
			continue
		case trace.EventStateTransition:
		default:
			continue
		}
		st := ev.StateTransition()
		if st.Resource.Kind != trace.ResourceGoroutine {
			continue
		}
		id := st.Resource.Goroutine()
		from, to := st.Goroutine()
		g := gs[id]
		if g == nil {
			g = &goroutine{state: from, since: ev.Time()}
			gs[id] = g
		}
		if g.name == "" {
			g.name = startFunc(st.Stack)
			if g.name == "" && to == trace.GoRunning {
				g.name = startFunc(ev.Stack())
			}
			if g.name == writerFunc {
				g.inBusy = map[string]time.Duration{}
			}
		}
		d := time.Duration(ev.Time() - g.since)
		switch g.state {
		case trace.GoRunning:
			g.running += d
		case trace.GoSyscall:
			g.syscall += d
			if g.inBusy != nil {
				g.syscalls = append(g.syscalls, d)
			}
		case trace.GoWaiting:
			g.waiting += d
		case trace.GoRunnable:
			g.runnable += d
		}
		if to == trace.GoRunnable {
			g.wakes++
		}
		if g.inBusy != nil {
			if g.state == trace.GoWaiting && to != trace.GoWaiting {
				g.busySince = ev.Time()
				clear(g.inBusy)
			}
			if to == trace.GoWaiting && g.busySince != 0 {
				b := time.Duration(ev.Time() - g.busySince)
				g.busy = append(g.busy, b)
				if b > *long {
					fmt.Printf("writer busy %v:%s\n", b.Round(10*time.Microsecond), parts(g.inBusy))
				}
			}
		}
		g.state, g.since = to, ev.Time()
	}

	kinds := map[string]*kind{}
	for _, g := range gs {
		k := kinds[g.name]
		if k == nil {
			k = &kind{name: g.name}
			kinds[g.name] = k
		}
		k.running += g.running
		k.syscall += g.syscall
		k.waiting += g.waiting
		k.runnable += g.runnable
		k.wakes += g.wakes
		if g.name == writerFunc {
			fmt.Println()
			percentiles("writer system calls", g.syscalls)
			percentiles("writer busy periods", g.busy)
		}
	}
	fmt.Println()
	var names []string
	for n := range regions {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		percentiles(n, regions[n])
	}
	list := make([]*kind, 0, len(kinds))
	for _, k := range kinds {
		list = append(list, k)
	}
	sort.Slice(list, func(i, j int) bool {
		return list[i].running+list[i].runnable > list[j].running+list[j].runnable
	})
	fmt.Printf("\n%-60s %10s %10s %12s %10s %8s %10s\n", "goroutines started in", "running", "syscall", "blocked", "runnable", "readied", "runnable/readied")
	for _, k := range list[:min(20, len(list))] {
		var per time.Duration
		if k.wakes > 0 {
			per = k.runnable / time.Duration(k.wakes)
		}
		fmt.Printf("%-60s %10v %10v %12v %10v %8d %10v\n", k.name, k.running.Round(time.Millisecond), k.syscall.Round(time.Millisecond),
			k.waiting.Round(time.Millisecond), k.runnable.Round(time.Millisecond), k.wakes, per.Round(time.Microsecond))
	}
}

// startFunc is the function a goroutine started in: the outermost frame
// of its stack.
func startFunc(st trace.Stack) string {
	var last string
	for f := range st.Frames() {
		if !strings.HasPrefix(f.Func, "runtime.goexit") {
			last = f.Func
		}
	}
	return last
}

// parts lists the regions of a busy period, by name.
func parts(in map[string]time.Duration) string {
	names := make([]string, 0, len(in))
	for n := range in {
		names = append(names, n)
	}
	sort.Strings(names)
	var b strings.Builder
	for _, n := range names {
		fmt.Fprintf(&b, " %s=%v", n, in[n].Round(10*time.Microsecond))
	}
	return b.String()
}

// percentiles prints the count, mean, percentiles and sum of ds.
func percentiles(name string, ds []time.Duration) {
	if len(ds) == 0 {
		return
	}
	sort.Slice(ds, func(i, j int) bool { return ds[i] < ds[j] })
	var sum time.Duration
	for _, d := range ds {
		sum += d
	}
	q := func(p float64) time.Duration { return ds[int(p*float64(len(ds)-1))].Round(time.Microsecond) }
	fmt.Printf("%-26s n=%6d mean=%8v p50=%8v p90=%8v p99=%8v max=%8v sum=%v\n", name, len(ds),
		(sum / time.Duration(len(ds))).Round(time.Microsecond), q(.5), q(.9), q(.99), q(1), sum.Round(time.Millisecond))
}
