// Command walpages tells which tables and indexes the commits of a
// running server write: it follows the server's WAL for a while, reading
// each committed frame's page number, then names each page's b-tree from
// SQLite's dbstat table.
//
//	go run ./docs/bench/store/walpages DATA/tidings.db 20s
//
// It reads only the frames' headers, and the database read-only; a page
// is named by its b-tree at the end (a page freed and used again since
// is named by its last owner). Frames appended while the WAL started
// again from its beginning between two reads are missed: the counts are
// a sample, the ratios between them are what it tells. See
// docs/benchmarks.md, "Which pages a commit writes".
package main

import (
	"database/sql"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"sort"
	"time"

	_ "modernc.org/sqlite"
)

// WAL layout (https://sqlite.org/fileformat2.html#walformat): a 32-byte
// header whose salts (bytes 16 to 23) change when the WAL starts again,
// then frames of a 24-byte header (page number, database size after the
// commit for a commit's last frame, else 0, the salts) and a page.
const (
	walHeader   = 32
	frameHeader = 24
)

func main() {
	if len(os.Args) != 3 {
		fmt.Fprintln(os.Stderr, "usage: walpages DATABASE DURATION")
		os.Exit(2)
	}
	dur, err := time.ParseDuration(os.Args[2])
	if err != nil {
		fail(err)
	}
	pages, commits, restarts, err := follow(os.Args[1]+"-wal", dur)
	if err != nil {
		fail(err)
	}
	owners, err := owners(os.Args[1])
	if err != nil {
		fail(err)
	}
	count := map[string]int{}
	for _, p := range pages {
		name, ok := owners[p]
		switch {
		case p == 1:
			name = "page 1 (the header)"
		case !ok:
			name = "(free now)"
		}
		count[name]++
	}
	names := make([]string, 0, len(count))
	for n := range count {
		names = append(names, n)
	}
	sort.Slice(names, func(i, j int) bool { return count[names[i]] > count[names[j]] })
	fmt.Printf("%d frames in %d commits (%.2f a commit); the WAL started again %d times\n",
		len(pages), commits, float64(len(pages))/float64(max(commits, 1)), restarts)
	for _, n := range names {
		fmt.Printf("%8d %6.2f a commit  %s\n", count[n], float64(count[n])/float64(max(commits, 1)), n)
	}
}

// follow reads the frames committed to the WAL at path during dur, from
// its end at the start, and returns their page numbers.
func follow(path string, dur time.Duration) (pages []uint32, commits, restarts int, err error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, 0, 0, err
	}
	defer f.Close()
	hdr := make([]byte, walHeader)
	fh := make([]byte, frameHeader)
	var salt [2]uint32
	pageSize := int64(0)
	off := int64(-1)  // the next frame's offset; -1: not found yet
	var open []uint32 // the frames of a commit not seen whole yet
	for end := time.Now().Add(dur); time.Now().Before(end); time.Sleep(2 * time.Millisecond) {
		if _, err := f.ReadAt(hdr, 0); err != nil {
			if errors.Is(err, io.EOF) {
				continue
			}
			return nil, 0, 0, err
		}
		s := [2]uint32{binary.BigEndian.Uint32(hdr[16:]), binary.BigEndian.Uint32(hdr[20:])}
		skip := off < 0
		if s != salt {
			if off >= 0 {
				restarts++
			}
			salt, pageSize, off, open = s, int64(binary.BigEndian.Uint32(hdr[8:])), walHeader, open[:0]
		}
		for {
			if _, err := f.ReadAt(fh, off); err != nil {
				if errors.Is(err, io.EOF) {
					break
				}
				return nil, 0, 0, err
			}
			if binary.BigEndian.Uint32(fh[8:]) != salt[0] || binary.BigEndian.Uint32(fh[12:]) != salt[1] {
				break // not written since the WAL started again
			}
			off += frameHeader + pageSize
			open = append(open, binary.BigEndian.Uint32(fh))
			if binary.BigEndian.Uint32(fh[4:]) != 0 { // a commit's last frame
				if !skip {
					pages = append(pages, open...)
					commits++
				}
				open = open[:0]
			}
		}
		off -= int64(len(open)) * (frameHeader + pageSize) // read again next time
		open = open[:0]
	}
	return pages, commits, restarts, nil
}

// owners names each page of the database by its b-tree and kind (leaf,
// internal, overflow).
func owners(path string) (map[uint32]string, error) {
	db, err := sql.Open("sqlite", "file:"+path+"?mode=ro")
	if err != nil {
		return nil, err
	}
	defer db.Close()
	rows, err := db.Query(`SELECT name || ' (' || pagetype || ')', pageno FROM dbstat`)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	m := map[uint32]string{}
	for rows.Next() {
		var name string
		var page uint32
		if err := rows.Scan(&name, &page); err != nil {
			return nil, err
		}
		m[page] = name
	}
	return m, rows.Err()
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "walpages:", err)
	os.Exit(1)
}
