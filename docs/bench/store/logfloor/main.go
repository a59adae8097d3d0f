// Command logfloor measures what storing a send durably costs at least,
// in CPU, in two engines: SQLite as the server uses it (WAL,
// synchronous FULL, a send's event row and journal row appended to two
// tables, a transaction per group of sends) and a plain append-only file
// (the same bytes written at each group's end, then fsync). It answers
// how much of a send's CPU the store's engine could give back at best,
// were sends logged to a file of their own (docs/benchmarks.md, "What a
// durable send costs at least").
//
//	go run ./docs/bench/store/logfloor DIR SENDS GROUP ROUNDS
//
// Each round runs both, one after the other, on fresh files in DIR, and
// prints, per send: the process's CPU (user and system, getrusage), the
// wall time, and the bytes the process wrote (/proc/self/io). GROUP is
// how many sends commit together (the server's group commit: about 2 in
// 5-member rooms at 1,000 msgs/s). Nothing else runs in the process.
package main

import (
	"bytes"
	"database/sql"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	_ "modernc.org/sqlite"

	"github.com/tidings/tidings/internal/cputime"
)

// The rows of one send, as the server's are in the peer tool's rooms: the
// event (payload: the message's columns as JSON) and the journal's row.
const (
	eventBytes   = 400
	journalBytes = 200
)

func main() {
	if len(os.Args) != 5 {
		fmt.Fprintln(os.Stderr, "usage: logfloor DIR SENDS GROUP ROUNDS")
		os.Exit(2)
	}
	dir := os.Args[1]
	sends, err1 := strconv.Atoi(os.Args[2])
	group, err2 := strconv.Atoi(os.Args[3])
	rounds, err3 := strconv.Atoi(os.Args[4])
	if err1 != nil || err2 != nil || err3 != nil || sends < 1 || group < 1 || rounds < 1 {
		fmt.Fprintln(os.Stderr, "logfloor: SENDS, GROUP and ROUNDS are positive integers")
		os.Exit(2)
	}
	for r := 1; r <= rounds; r++ {
		for _, e := range []struct {
			name string
			run  func(dir string, sends, group int) error
		}{{"sqlite", runSQLite}, {"append", runAppend}} {
			d := filepath.Join(dir, fmt.Sprintf("%s-%d", e.name, r))
			if err := os.MkdirAll(d, 0o755); err != nil {
				fail(err)
			}
			cpu0, wall0, w0 := cputime.Self(), time.Now(), written()
			if err := e.run(d, sends, group); err != nil {
				fail(fmt.Errorf("%s: %w", e.name, err))
			}
			cpu1, wall1, w1 := cputime.Self(), time.Now(), written()
			n := float64(sends)
			fmt.Printf("round=%d engine=%s sends=%d group=%d cpu_us_per_send=%.1f wall_us_per_send=%.1f kib_written_per_send=%.2f\n",
				r, e.name, sends, group, float64(cpu1-cpu0)/1e3/n, float64(wall1.Sub(wall0))/1e3/n, float64(w1-w0)/1024/n)
			os.RemoveAll(d)
		}
	}
}

// runSQLite appends each send's two rows to SQLite's tables, a
// transaction per group.
func runSQLite(dir string, sends, group int) error {
	db, err := sql.Open("sqlite", "file:"+filepath.Join(dir, "log.db")+
		"?_pragma=journal_mode(WAL)&_pragma=synchronous(FULL)")
	if err != nil {
		return err
	}
	defer db.Close()
	db.SetMaxOpenConns(1)
	for _, q := range []string{
		`CREATE TABLE events (seq INTEGER PRIMARY KEY, id TEXT NOT NULL, name TEXT NOT NULL, time BIGINT NOT NULL, payload TEXT NOT NULL)`,
		`CREATE TABLE journal (event_seq INTEGER PRIMARY KEY, conversation_id TEXT NOT NULL, seq BIGINT NOT NULL, parts TEXT NOT NULL)`,
	} {
		if _, err := db.Exec(q); err != nil {
			return err
		}
	}
	ev, err := db.Prepare(`INSERT INTO events (id, name, time, payload) VALUES (?, ?, ?, ?)`)
	if err != nil {
		return err
	}
	defer ev.Close()
	jr, err := db.Prepare(`INSERT INTO journal (event_seq, conversation_id, seq, parts) VALUES (?, ?, ?, ?)`)
	if err != nil {
		return err
	}
	defer jr.Close()
	begin, err := db.Prepare(`BEGIN IMMEDIATE`)
	if err != nil {
		return err
	}
	commit, err := db.Prepare(`COMMIT`)
	if err != nil {
		return err
	}
	payload := strings.Repeat("p", eventBytes-60)
	parts := strings.Repeat("x", journalBytes-40)
	for i := 0; i < sends; i += group {
		if _, err := begin.Exec(); err != nil {
			return err
		}
		for j := i; j < min(i+group, sends); j++ {
			res, err := ev.Exec(fmt.Sprintf("%026d", j), "message.sent", time.Now().UnixMicro(), payload)
			if err != nil {
				return err
			}
			seq, _ := res.LastInsertId()
			if _, err := jr.Exec(seq, fmt.Sprintf("room-%d", j%2000), j, parts); err != nil {
				return err
			}
		}
		if _, err := commit.Exec(); err != nil {
			return err
		}
	}
	return nil
}

// runAppend appends the same bytes to a file: each group's records in
// one write, then fsync, as a log of sends would.
func runAppend(dir string, sends, group int) error {
	f, err := os.OpenFile(filepath.Join(dir, "log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	defer f.Close()
	rec := bytes.Repeat([]byte("r"), eventBytes+journalBytes)
	buf := make([]byte, 0, group*len(rec))
	for i := 0; i < sends; i += group {
		buf = buf[:0]
		for j := i; j < min(i+group, sends); j++ {
			buf = append(buf, rec...)
		}
		if _, err := f.Write(buf); err != nil {
			return err
		}
		if err := f.Sync(); err != nil {
			return err
		}
	}
	return nil
}

// written is the bytes the process wrote to storage so far (0 where
// /proc/self/io cannot be read).
func written() int64 {
	b, err := os.ReadFile("/proc/self/io")
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "wchar: "); ok {
			n, _ := strconv.ParseInt(v, 10, 64)
			return n
		}
	}
	return 0
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "logfloor:", err)
	os.Exit(1)
}
