package main

import (
	"io"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
	"unicode/utf8"
)

// vt is a small terminal emulator, enough to see what the line editor
// shows: printing with wide characters and automatic margins (the cursor
// stays on the last column of a full row until more is written), CR, LF,
// the cursor moves (CUU, CUD, CUF, CUB) and the erasures (ED, EL) it uses.
type vt struct {
	mu       sync.Mutex
	width    int
	cells    [][]string // a cell holds a character and its combining marks; "\x00" is the right half of a wide one
	row, col int
	pending  bool // the cursor is past the last column
	rest     []byte
}

func newVT(width int) *vt { return &vt{width: width, cells: [][]string{nil}} }

func (t *vt) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	b := append(t.rest, p...)
	t.rest = nil
	for len(b) > 0 {
		if b[0] == 0x1b {
			n := t.escape(b)
			if n == 0 { // incomplete
				t.rest = append([]byte(nil), b...)
				break
			}
			b = b[n:]
			continue
		}
		if !utf8.FullRune(b) {
			t.rest = append([]byte(nil), b...)
			break
		}
		r, n := utf8.DecodeRune(b)
		b = b[n:]
		t.put(r)
	}
	return len(p), nil
}

// escape runs the CSI sequence at the start of b, and returns its length.
func (t *vt) escape(b []byte) int {
	if len(b) < 2 {
		return 0
	}
	if b[1] != '[' {
		return 2
	}
	i := 2
	for i < len(b) && (b[i] < 0x40 || b[i] > 0x7e) {
		i++
	}
	if i == len(b) {
		return 0
	}
	n, err := strconv.Atoi(string(b[2:i]))
	if err != nil {
		n = 0
	}
	step := max(n, 1)
	switch b[i] {
	case 'A':
		t.row, t.pending = max(0, t.row-step), false
	case 'B':
		t.row, t.pending = t.row+step, false
		t.grow()
	case 'C':
		t.col, t.pending = min(t.width-1, t.col+step), false
	case 'D':
		t.col, t.pending = max(0, t.col-step), false
	case 'K':
		t.clearRow(t.row, t.col)
	case 'J':
		t.clearRow(t.row, t.col)
		t.cells = t.cells[:t.row+1]
	}
	return i + 1
}

func (t *vt) grow() {
	for len(t.cells) <= t.row {
		t.cells = append(t.cells, nil)
	}
}

func (t *vt) clearRow(row, from int) {
	if from < len(t.cells[row]) {
		t.cells[row] = t.cells[row][:from]
	}
}

func (t *vt) set(row, col int, s string) {
	for len(t.cells[row]) <= col {
		t.cells[row] = append(t.cells[row], " ")
	}
	t.cells[row][col] = s
}

func (t *vt) put(r rune) {
	switch r {
	case '\r':
		t.col, t.pending = 0, false
		return
	case '\n':
		t.row, t.pending = t.row+1, false
		t.grow()
		return
	}
	w := runeWidth(r)
	if w == 0 { // joins the character before
		c, row := t.col-1, t.row
		if t.pending {
			c = t.col
		}
		if c >= 0 && c < len(t.cells[row]) {
			if t.cells[row][c] == "\x00" && c > 0 {
				c--
			}
			t.cells[row][c] += string(r)
		}
		return
	}
	if t.pending || t.col+w > t.width {
		t.row, t.col, t.pending = t.row+1, 0, false
		t.grow()
	}
	t.set(t.row, t.col, string(r))
	if w == 2 {
		t.set(t.row, t.col+1, "\x00")
	}
	t.col += w
	if t.col >= t.width {
		t.col, t.pending = t.width-1, true
	}
}

// screen returns the rows shown, and the cursor's place.
func (t *vt) screen() (rows []string, row, col int) {
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, cells := range t.cells {
		var b strings.Builder
		for _, c := range cells {
			if c != "\x00" {
				b.WriteString(c)
			}
		}
		rows = append(rows, strings.TrimRight(b.String(), " "))
	}
	return rows, t.row, t.col
}

// editor is a terminal screen on a vt, and the keys typed on it.
type editor struct {
	scr   *termScreen
	term  *vt
	keys  *io.PipeWriter
	lines chan string
}

func newEditor(t *testing.T, width int) *editor {
	in, keys := io.Pipe()
	e := &editor{term: newVT(width), keys: keys, lines: make(chan string, 10)}
	e.scr = newTermScreen(struct {
		io.Reader
		io.Writer
	}{in, e.term}, style{})
	e.scr.size = func() (int, int, error) { return width, 24, nil }
	go func() {
		for {
			line, err := e.scr.readLine()
			if err != nil {
				close(e.lines)
				return
			}
			e.lines <- line
		}
	}()
	t.Cleanup(func() { keys.Close() })
	return e
}

// waitScreen waits until the rows shown are want, and the cursor at row
// and col.
func (e *editor) waitScreen(t *testing.T, want []string, row, col int) {
	t.Helper()
	deadline := time.Now().Add(wait)
	for {
		rows, r, c := e.term.screen()
		if strings.Join(rows, "\n") == strings.Join(want, "\n") && r == row && c == col {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("the screen shows\n%s\nwith the cursor at row %d, column %d; want\n%s\nat row %d, column %d",
				strings.Join(rows, "\n"), r, c, strings.Join(want, "\n"), row, col)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func (e *editor) waitLine(t *testing.T, want string) {
	t.Helper()
	select {
	case line := <-e.lines:
		if line != want {
			t.Errorf("the line entered is %q, want %q", line, want)
		}
	case <-time.After(wait):
		t.Fatalf("no line entered; want %q", want)
	}
}

// What the screen shows of a line with wide characters is what is sent,
// with the cursor where the next character goes.
func TestTermScreenWideCharacters(t *testing.T) {
	e := newEditor(t, 20)
	e.waitScreen(t, []string{">"}, 0, 2)
	io.WriteString(e.keys, "日本語")
	e.waitScreen(t, []string{"> 日本語"}, 0, 8)
	io.WriteString(e.keys, "\x7f")
	e.waitScreen(t, []string{"> 日本"}, 0, 6)
	io.WriteString(e.keys, "\x1b[D")
	e.waitScreen(t, []string{"> 日本"}, 0, 4)
	io.WriteString(e.keys, "X")
	e.waitScreen(t, []string{"> 日X本"}, 0, 5)

	// Lines shown go above the line being edited, which stays as it was.
	e.scr.println("bob: 今日は")
	e.waitScreen(t, []string{"bob: 今日は", "> 日X本"}, 1, 5)
	io.WriteString(e.keys, "\r")
	e.waitLine(t, "日X本")
	e.waitScreen(t, []string{"bob: 今日は", ">"}, 1, 2)

	// Combining marks take no column: the cursor moves over é at once.
	io.WriteString(e.keys, "cafe\u0301\x1b[DX")
	e.waitScreen(t, []string{"bob: 今日は", "> cafXe\u0301"}, 1, 6)
	io.WriteString(e.keys, "\x1b[C\x7f\r")
	e.waitLine(t, "cafX")

	// A wide character that does not fit at the end of a row starts the
	// next one, and the cursor follows.
	io.WriteString(e.keys, "abcdefghijklmnopq日本")
	e.waitScreen(t, []string{"bob: 今日は", "> abcdefghijklmnopq", "日本"}, 2, 4)
	io.WriteString(e.keys, "\x1b[D\x1b[D")
	e.waitScreen(t, []string{"bob: 今日は", "> abcdefghijklmnopq", "日本"}, 2, 0)
	io.WriteString(e.keys, "\x1b[D")
	e.waitScreen(t, []string{"bob: 今日は", "> abcdefghijklmnopq", "日本"}, 1, 18)
	io.WriteString(e.keys, "\x15") // Ctrl-U
	e.waitScreen(t, []string{"bob: 今日は", "> q日本"}, 1, 2)
	io.WriteString(e.keys, "\r")
	e.waitLine(t, "q日本")

	// The up arrow brings back the lines entered before.
	io.WriteString(e.keys, "\x1b[A\x1b[A\x1b[A")
	e.waitScreen(t, []string{"bob: 今日は", "> 日X本"}, 1, 7)
}

func TestRuneWidth(t *testing.T) {
	for _, tc := range []struct {
		s     string
		width int
	}{
		{"abc", 3}, {"日本語", 6}, {"e\u0301", 1}, {"한국어", 6}, {"ｶﾀｶﾅ", 4}, {"ＡＢ", 4}, {"🎉", 2}, {"é…✓", 3}, {"\u200d", 0},
	} {
		if got := stringWidth(tc.s); got != tc.width {
			t.Errorf("stringWidth(%q) = %d, want %d", tc.s, got, tc.width)
		}
	}
}

// Names are cut and padded to columns, wide characters counted twice.
func TestPadByWidth(t *testing.T) {
	for _, tc := range []struct {
		s     string
		width int
		want  string
	}{
		{"Bob", 5, "Bob  "}, {"山田", 5, "山田 "}, {"山田太郎", 5, "山田…"}, {"山田太郎", 6, "山田… "}, {"Alexandra", 5, "Alex…"},
	} {
		if got := pad(tc.s, tc.width); got != tc.want || stringWidth(got) != tc.width {
			t.Errorf("pad(%q, %d) = %q, want %q", tc.s, tc.width, got, tc.want)
		}
	}
}
