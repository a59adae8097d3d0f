package sqlite_test

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tidings/tidings"
	"github.com/tidings/tidings/internal/cputime"
	"github.com/tidings/tidings/sqlite"
)

// benchSend measures durable sends: each one returns only after its
// transaction has committed with synchronous=FULL. Senders run
// concurrently (parallelism × GOMAXPROCS goroutines), spread over 10
// conversations of 2 participants each.
func benchSend(b *testing.B, parallelism int, synchronous string) {
	e := openDBWith(b, filepath.Join(b.TempDir(), "bench.db"), func(db *sqlite.DB) { db.Synchronous = synchronous })
	if _, err := e.apps.CreateApp(context.Background(), "a", ""); err != nil {
		b.Fatal(err)
	}
	var convs []string
	e.mkUsers(b, "a", "alice", "bob")
	for range 10 {
		c := e.mkConv(b, "a", "alice", tidings.NewConversation{Participants: []tidings.NewParticipant{{UserID: "bob"}}})
		convs = append(convs, c.ID)
	}
	parts := text("64 bytes of message text, which is about one line of a chat.....")
	var n atomic.Int64
	b.SetParallelism(parallelism)
	b.ReportAllocs()
	cpu0 := cputime.Self()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			i := n.Add(1)
			_, _, err := e.messages.SendMessage(user("a", "alice"), convs[i%10], tidings.NewMessage{Parts: parts})
			if err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.StopTimer()
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "msgs/s")
	b.ReportMetric(float64((cputime.Self()-cpu0).Microseconds())/float64(b.N), "cpu-µs/msg")
}

func BenchmarkSendMessage(b *testing.B) {
	for _, senders := range []int{1, 8, 64} {
		b.Run(fmt.Sprintf("senders=%dxP/sync=FULL", senders), func(b *testing.B) { benchSend(b, senders, "FULL") })
	}
	b.Run("senders=64xP/sync=NORMAL", func(b *testing.B) { benchSend(b, 64, "NORMAL") })
}

// BenchmarkFindUserByID measures the read that every authenticated API
// request makes: is the token's user still there?
func BenchmarkFindUserByID(b *testing.B) {
	e := openDBWith(b, filepath.Join(b.TempDir(), "bench.db"), nil)
	if _, err := e.apps.CreateApp(context.Background(), "a", ""); err != nil {
		b.Fatal(err)
	}
	e.mkUsers(b, "a", "alice", "bob")
	ctx := user("a", "bob")
	b.ReportAllocs()
	for b.Loop() {
		if _, err := e.users.FindUserByID(ctx, "alice"); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkSendRooms measures durable sends spread over many small
// conversations (2,000 of 5 participants, as in "tidings bench rooms"),
// each send to another conversation than the last ones, with a database
// that already holds history messages per conversation (filled with
// sqlite.FillHistory): what a send costs must not grow with the history.
// 16 senders at once, so commits group about as many sends as the
// server's at 1,000 messages a second.
func BenchmarkSendRooms(b *testing.B) {
	for _, history := range []int{0, 50, 500} {
		b.Run(fmt.Sprintf("history=%dx2000", history), func(b *testing.B) { benchSendRooms(b, 2000, 5, history, 0, 0) })
	}
	// One send in 100 from a user who is not a member of the room (and so
	// refused in the writer).
	b.Run("history=0x2000/refused=1in100", func(b *testing.B) { benchSendRooms(b, 2000, 5, 0, 0, 100) })
	// While the push dispatcher asks, 250 or 1,000 times a second, for the
	// unread counts of members who are offline (push.Dispatcher.send).
	for _, pushes := range []int{250, 1000} {
		b.Run(fmt.Sprintf("history=0x2000/pushes=%d", pushes), func(b *testing.B) { benchSendRooms(b, 2000, 5, 0, pushes, 0) })
	}
}

// benchSendRooms sends b.N messages into rooms rooms of members each,
// from 16 goroutines; with pushes > 0, another asks PushRecipient that
// many times a second for a member of the room of a recent send. With
// refusedEvery > 0, every refusedEvery-th send comes from a member of
// another room, and is refused.
func benchSendRooms(b *testing.B, rooms, members, history, pushes, refusedEvery int) {
	template := roomsTemplate(b, rooms, members)
	path := filepath.Join(b.TempDir(), "bench.db")
	if err := copyFile(template, path); err != nil {
		b.Fatal(err)
	}
	if history > 0 {
		if _, err := sqlite.FillHistory(context.Background(), path, "a", "r", history, nil); err != nil {
			b.Fatal(err)
		}
	}
	noClientID := os.Getenv("TIDINGS_BENCH_CLIENT_ID") == "none"
	e := openDBWith(b, path, nil)
	parts := text("64 bytes of message text, which is about one line of a chat.....")
	var n atomic.Int64
	latency := make([]time.Duration, b.N+1) // of each send, by i
	io0 := procIO(b)
	cpu0 := cputime.Self()
	push := sqlite.NewPushService(e.db)
	pushDone := make(chan struct{})
	var pwg sync.WaitGroup
	var asked atomic.Int64
	if pushes > 0 {
		pwg.Add(1)
		go func() {
			defer pwg.Done()
			t := time.NewTicker(time.Second / time.Duration(pushes))
			defer t.Stop()
			for {
				select {
				case <-pushDone:
					return
				case <-t.C:
				}
				i := int(n.Load())
				r := (i * 7919) % rooms
				to := fmt.Sprintf("u%d", r*members+(i+1)%members)
				if _, err := push.PushRecipient(context.Background(), "a", to, fmt.Sprintf("r%d", r)); err != nil {
					b.Error(err)
					return
				}
				asked.Add(1)
			}
		}()
	}
	b.ResetTimer()
	var swg sync.WaitGroup
	for range 16 {
		swg.Add(1)
		go func() {
			defer swg.Done()
			for {
				i := int(n.Add(1))
				if i > b.N {
					return
				}
				r := (i * 7919) % rooms // another room each time
				from := fmt.Sprintf("u%d", r*members+i%members)
				refused := refusedEvery > 0 && i%refusedEvery == 0
				if refused {
					from = fmt.Sprintf("u%d", ((r+1)%rooms)*members)
				}
				nm := tidings.NewMessage{Parts: parts, ClientID: fmt.Sprintf("c%d", i)}
				if noClientID {
					nm.ClientID = "" // no entry in messages_by_client_id
				}
				start := time.Now()
				_, _, err := e.messages.SendMessage(user("a", from), fmt.Sprintf("r%d", r), nm)
				latency[i] = time.Since(start)
				if refused {
					if err == nil {
						b.Error("a send from a member of another room was stored")
						return
					}
					err = nil
				}
				if err != nil {
					b.Error(err)
					return
				}
			}
		}()
	}
	swg.Wait()
	// What the sends left for later (their marks, and their messages in
	// the journal) is written before the clock stops: it is part of what
	// they cost. A write that is not a send does both.
	if _, err := e.convs.CreateConversation(user("a", "u0"), tidings.NewConversation{}); err != nil {
		b.Fatal(err)
	}
	b.StopTimer()
	close(pushDone)
	pwg.Wait()
	io1 := procIO(b)
	if pushes > 0 {
		b.ReportMetric(float64(asked.Load())/b.Elapsed().Seconds(), "pushes/s")
	}
	slices.Sort(latency[1:])
	b.ReportMetric(float64(latency[1+(b.N-1)*99/100].Microseconds())/1000, "p99-ms")
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "msgs/s")
	b.ReportMetric(float64((cputime.Self()-cpu0).Microseconds())/float64(b.N), "cpu-µs/msg")
	b.ReportMetric(float64(io1["syscw"]-io0["syscw"])/float64(b.N), "writes/msg")
	b.ReportMetric(float64(io1["syscr"]-io0["syscr"])/float64(b.N), "reads/msg")
	b.ReportMetric(float64(io1["write_bytes"]-io0["write_bytes"])/float64(b.N)/1024, "KiB-written/msg")
}

// procIO reads this process's I/O counters (/proc/self/io).
func procIO(b *testing.B) map[string]int64 {
	data, err := os.ReadFile("/proc/self/io")
	if err != nil {
		b.Skip("no /proc/self/io:", err)
	}
	m := map[string]int64{}
	for _, line := range strings.Split(string(data), "\n") {
		k, v, ok := strings.Cut(line, ": ")
		if ok {
			m[k], _ = strconv.ParseInt(v, 10, 64)
		}
	}
	return m
}

// roomsTemplate returns a database of rooms conversations of members
// users each (room r is "r<r>", its users "u<r*members>"… the first its
// owner), made once and kept in the temporary directory, since making it
// takes a while.
func roomsTemplate(b *testing.B, rooms, members int) string {
	name := fmt.Sprintf("tidings-bench-rooms-%dx%d", rooms, members)
	if size := benchPageSize(b); size != 0 {
		name += fmt.Sprintf("-p%d", size)
	}
	path := filepath.Join(os.TempDir(), name+".db")
	if _, err := os.Stat(path); err == nil {
		return path
	}
	tmp := filepath.Join(b.TempDir(), "template.db")
	e := openDBWith(b, tmp, func(db *sqlite.DB) { db.PageSize = benchPageSize(b) })
	if _, err := e.apps.CreateApp(context.Background(), "a", ""); err != nil {
		b.Fatal(err)
	}
	// In parallel, so that group commit makes it quick.
	var wg sync.WaitGroup
	work := make(chan int)
	for range 64 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for r := range work {
				nc := tidings.NewConversation{ID: fmt.Sprintf("r%d", r)}
				for m := range members {
					id := fmt.Sprintf("u%d", r*members+m)
					if _, err := e.users.CreateUser(server("a"), &tidings.User{ID: id}); err != nil {
						b.Error(err)
						return
					}
					if m > 0 {
						nc.Participants = append(nc.Participants, tidings.NewParticipant{UserID: id})
					}
				}
				if _, err := e.convs.CreateConversation(user("a", fmt.Sprintf("u%d", r*members)), nc); err != nil {
					b.Error(err)
					return
				}
			}
		}()
	}
	for r := range rooms {
		work <- r
	}
	close(work)
	wg.Wait()
	if b.Failed() {
		b.FailNow()
	}
	if err := e.db.Close(); err != nil { // checkpoints: the file is whole
		b.Fatal(err)
	}
	if err := copyFile(tmp, path+".tmp"); err != nil {
		b.Fatal(err)
	}
	if err := os.Rename(path+".tmp", path); err != nil {
		b.Fatal(err)
	}
	return path
}

// benchPageSize is the page size of the rooms database:
// $TIDINGS_BENCH_PAGE_SIZE, to compare page sizes, or 0 (SQLite's
// default, 4096).
func benchPageSize(b *testing.B) int {
	v := os.Getenv("TIDINGS_BENCH_PAGE_SIZE")
	if v == "" {
		return 0
	}
	n, err := strconv.Atoi(v)
	if err != nil {
		b.Fatalf("TIDINGS_BENCH_PAGE_SIZE: %v", err)
	}
	return n
}

// copyFile copies a closed database, with its WAL if it has one.
func copyFile(from, to string) error {
	data, err := os.ReadFile(from)
	if err != nil {
		return err
	}
	if err := os.WriteFile(to, data, 0o600); err != nil {
		return err
	}
	wal, err := os.ReadFile(from + "-wal")
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	return os.WriteFile(to+"-wal", wal, 0o600)
}

// BenchmarkSaveCursors measures what the realtime node's flush of
// acknowledged refs costs the writer, on the rooms database (a device each
// of its 10,000 users):
//
//   - all: one SaveCursors of all 10,000 cursors, each flush moving every
//     cursor forward;
//   - flush/order=map and flush/order=key: a tick's flush as the node
//     makes it with 5 s between two stores of a device (the default):
//     2,000 cursors, a fifth of the devices picked at random, in writes of
//     500, in the order of the node's map (none) or of the table's key
//     (as the node now sorts them; realtime.Node.storeCursors). Each
//     write is committed and its pages go to the WAL, and the
//     checkpointer's copies to the file: "B-written" counts both
//     (/proc/self/io).
func BenchmarkSaveCursors(b *testing.B) {
	b.Run("all", func(b *testing.B) { benchSaveCursors(b, 10000, 10000, "key") })
	b.Run("flush/order=map", func(b *testing.B) { benchSaveCursors(b, 2000, 500, "map") })
	b.Run("flush/order=key", func(b *testing.B) { benchSaveCursors(b, 2000, 500, "key") })
}

func benchSaveCursors(b *testing.B, perFlush, perWrite int, order string) {
	template := roomsTemplate(b, 2000, 5)
	path := filepath.Join(b.TempDir(), "bench.db")
	if err := copyFile(template, path); err != nil {
		b.Fatal(err)
	}
	e := openDBWith(b, path, nil)
	log := sqlite.NewEventLog(e.db)
	devices := make([]tidings.Cursor, 10000)
	for i := range devices {
		devices[i] = tidings.Cursor{AppID: "a", UserID: fmt.Sprintf("u%d", i), Device: "phone"}
	}
	rng := rand.New(rand.NewPCG(1, 2))
	flush := make([]tidings.Cursor, 0, perFlush)
	io0 := procIO(b)
	cpu0 := cputime.Self()
	b.ResetTimer()
	for n := range b.N {
		flush = flush[:0]
		for _, i := range rng.Perm(len(devices))[:perFlush] {
			c := devices[i]
			c.Seq = int64(n + 1)
			flush = append(flush, c)
		}
		if order == "key" {
			slices.SortFunc(flush, tidings.CompareCursorKeys)
		}
		for w := flush; len(w) > 0; {
			chunk := w[:min(len(w), perWrite)]
			w = w[len(chunk):]
			if err := log.SaveCursors(context.Background(), chunk); err != nil {
				b.Fatal(err)
			}
		}
	}
	b.StopTimer()
	io1 := procIO(b)
	b.ReportMetric(float64((cputime.Self()-cpu0).Microseconds())/float64(b.N*perFlush), "cpu-µs/cursor")
	b.ReportMetric(float64(io1["write_bytes"]-io0["write_bytes"])/float64(b.N*perFlush), "B-written/cursor")
	b.ReportMetric(float64(io1["syscw"]-io0["syscw"])/float64(b.N*perFlush), "writes/cursor")
}
