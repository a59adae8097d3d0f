package main

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"sync"
	"unicode"

	"golang.org/x/term"
)

// The screens of "tidings chat": where it shows lines and reads what the
// user types. On a terminal, the user edits a line at a prompt while
// messages appear above it; otherwise (a pipe, a file, a test) lines are
// read and written as they are.

// screen is where the chat shows lines and reads what the user types. Its
// methods but readLine are safe for concurrent use.
type screen interface {
	// readLine returns the next line the user entered, or io.EOF when
	// there are no more (Ctrl-D, Ctrl-C on a terminal).
	readLine() (string, error)
	// println shows a line (given without its newline).
	println(line string)
	// setTyping shows who else is typing, e.g. "bob is typing…"; "" when
	// nobody is.
	setTyping(text string)
	// onKey sets a function called with the line being edited each time
	// the user types a character in it (on a terminal only).
	onKey(func(line string))
	// close gives the terminal back as it was.
	close()
}

// style colours text with ANSI escape sequences, or leaves it alone.
type style struct{ color bool }

// Codes of the ANSI select graphic rendition.
const (
	sgrBold = "1"
	sgrDim  = "2"
)

// nameColors are the colours of the names of others (own messages are
// bold): cyan, yellow, magenta, blue, red, green.
var nameColors = []string{"36", "33", "35", "34", "31", "32"}

func (s style) paint(code, text string) string {
	if !s.color || text == "" {
		return text
	}
	return "\x1b[" + code + "m" + text + "\x1b[0m"
}

func (s style) dim(text string) string  { return s.paint(sgrDim, text) }
func (s style) bold(text string) string { return s.paint(sgrBold, text) }

// colorOutput reports whether the command may colour its standard
// output: it is a terminal, and neither NO_COLOR nor TERM=dumb say
// otherwise.
func (c *cli) colorOutput() bool {
	if v, ok := c.lookupEnv("NO_COLOR"); ok && v != "" {
		return false
	}
	if v, _ := c.lookupEnv("TERM"); v == "dumb" {
		return false
	}
	f, ok := c.stdout.(*os.File)
	return ok && term.IsTerminal(int(f.Fd()))
}

// chatScreen returns a terminal screen when both the standard input and
// output are a terminal, and a plain one otherwise.
func (c *cli) chatScreen(st style) (screen, error) {
	in, inOK := c.stdin.(*os.File)
	out, outOK := c.stdout.(*os.File)
	if !inOK || !outOK || !term.IsTerminal(int(in.Fd())) || !term.IsTerminal(int(out.Fd())) {
		return newPlainScreen(c.input(), c.stdout), nil
	}
	fd := int(in.Fd())
	old, err := term.MakeRaw(fd)
	if err != nil {
		return nil, fmt.Errorf("set up the terminal: %w", err)
	}
	s := newTermScreen(struct {
		io.Reader
		io.Writer
	}{in, out}, st)
	s.size = func() (int, int, error) { return term.GetSize(int(out.Fd())) }
	s.restore = func() { _ = term.Restore(fd, old) }
	return s, nil
}

// plainScreen reads lines from a reader and writes lines to a writer.
type plainScreen struct {
	in *bufio.Reader

	mu     sync.Mutex
	out    io.Writer
	typing string
}

func newPlainScreen(in io.Reader, out io.Writer) *plainScreen {
	return &plainScreen{in: bufio.NewReader(in), out: out}
}

func (s *plainScreen) readLine() (string, error) {
	line, err := s.in.ReadString('\n')
	if err != nil && line == "" {
		return "", err
	}
	return strings.TrimRight(line, "\r\n"), nil
}

func (s *plainScreen) println(line string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	fmt.Fprintln(s.out, line)
}

// setTyping prints a line when someone starts typing.
func (s *plainScreen) setTyping(text string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if text != "" && text != s.typing {
		fmt.Fprintln(s.out, text)
	}
	s.typing = text
}

func (s *plainScreen) onKey(func(string)) {}
func (s *plainScreen) close()             {}

// termScreen is a terminal in raw mode: the user edits a line at a
// prompt (with the usual keys, and the up arrow for the lines entered
// before), and lines shown appear above it. Who is typing shows in the
// prompt. The cursor is placed by the width of what is shown: two columns
// for East Asian wide characters, none for combining marks.
type termScreen struct {
	in      *bufio.Reader
	w       io.Writer // the terminal
	st      style
	size    func() (width, height int, err error) // nil: 80 columns
	restore func()

	mu      sync.Mutex // guards what follows, and writing to w
	width   int
	prompt  string   // as shown, escape sequences included
	line    []rune   // being edited
	pos     int      // of the cursor in line
	row     int      // of the cursor on the screen, from the prompt's first row
	past    []string // lines entered, oldest first
	browse  int      // index in past of the line shown (len(past): the one being typed)
	draft   []rune   // the line being typed, while browsing past ones
	key     func(line string)
	afterCR bool // the last key was a carriage return
}

const promptText = "> "

// maxPast bounds the lines the up arrow goes back to.
const maxPast = 100

func newTermScreen(rw io.ReadWriter, st style) *termScreen {
	s := &termScreen{in: bufio.NewReader(rw), w: rw, st: st, width: 80}
	s.setPrompt("")
	return s
}

// Keys.
const (
	keyCtrlA     = 1
	keyCtrlB     = 2
	keyCtrlC     = 3
	keyCtrlD     = 4
	keyCtrlE     = 5
	keyCtrlF     = 6
	keyCtrlH     = 8
	keyCtrlK     = 11
	keyCtrlL     = 12
	keyEnter     = '\r'
	keyCtrlU     = 21
	keyCtrlW     = 23
	keyEscape    = 27
	keyBackspace = 127
)

func (s *termScreen) readLine() (string, error) {
	s.resize()
	s.mu.Lock()
	s.redraw()
	s.mu.Unlock()
	for {
		r, _, err := s.in.ReadRune()
		if err != nil {
			return "", err
		}
		if r == keyEscape {
			if err := s.escape(); err != nil {
				return "", err
			}
			continue
		}
		s.mu.Lock()
		afterCR := s.afterCR
		s.afterCR = r == keyEnter
		switch {
		case r == keyEnter || r == '\n':
			if r == '\n' && afterCR {
				break // the end of a "\r\n"
			}
			line := string(s.line)
			s.erase()
			s.line, s.pos = nil, 0
			if line != "" && (len(s.past) == 0 || s.past[len(s.past)-1] != line) {
				s.past = append(s.past, line)
				if len(s.past) > maxPast {
					s.past = s.past[1:]
				}
			}
			s.browse, s.draft = len(s.past), nil
			s.draw()
			s.mu.Unlock()
			return line, nil
		case r == keyCtrlC || (r == keyCtrlD && len(s.line) == 0):
			s.mu.Unlock()
			return "", io.EOF
		case r == keyCtrlD:
			if s.pos < len(s.line) {
				s.line = slices.Delete(s.line, s.pos, nextStop(s.line, s.pos))
			}
		case r == keyBackspace || r == keyCtrlH:
			if s.pos > 0 {
				i := prevStop(s.line, s.pos)
				s.line = slices.Delete(s.line, i, s.pos)
				s.pos = i
			}
		case r == keyCtrlA:
			s.pos = 0
		case r == keyCtrlE:
			s.pos = len(s.line)
		case r == keyCtrlB:
			s.pos = prevStop(s.line, s.pos)
		case r == keyCtrlF:
			s.pos = nextStop(s.line, s.pos)
		case r == keyCtrlU:
			s.line = slices.Delete(s.line, 0, s.pos)
			s.pos = 0
		case r == keyCtrlK:
			s.line = s.line[:s.pos]
		case r == keyCtrlW:
			i := wordStart(s.line, s.pos)
			s.line = slices.Delete(s.line, i, s.pos)
			s.pos = i
		case r == keyCtrlL:
		case r == '\t':
			r = ' '
			fallthrough
		case unicode.IsGraphic(r) || unicode.Is(unicode.Cf, r): // Cf: joiners of emoji, marks of direction
			s.line = slices.Insert(s.line, s.pos, r)
			s.pos++
			s.redraw()
			f, line := s.key, string(s.line)
			s.mu.Unlock()
			if f != nil {
				f(line)
			}
			continue
		default: // other control characters
		}
		s.redraw()
		s.mu.Unlock()
	}
}

// escape reads the rest of an escape sequence (the arrows, Home, End,
// Delete...) and acts on it.
func (s *termScreen) escape() error {
	r, _, err := s.in.ReadRune()
	if err != nil {
		return err
	}
	var params []rune
	final := r
	if r == '[' || r == 'O' {
		for {
			if final, _, err = s.in.ReadRune(); err != nil {
				return err
			}
			if final >= 0x40 && final <= 0x7e {
				break
			}
			params = append(params, final)
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.afterCR = false
	p := string(params)
	switch {
	case r == 'b' || final == 'D' && (p == "1;5" || p == "1;3"): // Alt-b, Ctrl-Left
		s.pos = wordStart(s.line, s.pos)
	case r == 'f' || final == 'C' && (p == "1;5" || p == "1;3"): // Alt-f, Ctrl-Right
		s.pos = wordEnd(s.line, s.pos)
	case r != '[' && r != 'O':
	case final == 'A':
		s.recall(-1)
	case final == 'B':
		s.recall(1)
	case final == 'C':
		s.pos = nextStop(s.line, s.pos)
	case final == 'D':
		s.pos = prevStop(s.line, s.pos)
	case final == 'H' || final == '~' && (p == "1" || p == "7"):
		s.pos = 0
	case final == 'F' || final == '~' && (p == "4" || p == "8"):
		s.pos = len(s.line)
	case final == '~' && p == "3":
		if s.pos < len(s.line) {
			s.line = slices.Delete(s.line, s.pos, nextStop(s.line, s.pos))
		}
	}
	s.redraw()
	return nil
}

// recall shows the line entered before (d -1) or after (d 1) the one
// shown. s.mu is held.
func (s *termScreen) recall(d int) {
	i := s.browse + d
	if i < 0 || i > len(s.past) {
		return
	}
	if s.browse == len(s.past) {
		s.draft = slices.Clone(s.line)
	}
	s.browse = i
	if i == len(s.past) {
		s.line = s.draft
	} else {
		s.line = []rune(s.past[i])
	}
	s.pos = len(s.line)
}

// prevStop returns where the cursor goes left of pos: before the previous
// character and the combining marks that follow it.
func prevStop(line []rune, pos int) int {
	for pos > 0 {
		pos--
		if runeWidth(line[pos]) > 0 {
			break
		}
	}
	return pos
}

// nextStop returns where the cursor goes right of pos: after the next
// character and the combining marks that follow it.
func nextStop(line []rune, pos int) int {
	if pos < len(line) {
		pos++
	}
	for pos < len(line) && runeWidth(line[pos]) == 0 {
		pos++
	}
	return pos
}

// wordStart returns the start of the word before pos.
func wordStart(line []rune, pos int) int {
	for pos > 0 && unicode.IsSpace(line[pos-1]) {
		pos--
	}
	for pos > 0 && !unicode.IsSpace(line[pos-1]) {
		pos--
	}
	return pos
}

// wordEnd returns the end of the word after pos.
func wordEnd(line []rune, pos int) int {
	for pos < len(line) && unicode.IsSpace(line[pos]) {
		pos++
	}
	for pos < len(line) && !unicode.IsSpace(line[pos]) {
		pos++
	}
	return pos
}

// erase erases the prompt and the line, leaving the cursor where the
// prompt started. s.mu is held.
func (s *termScreen) erase() {
	var b strings.Builder
	if s.row > 0 {
		fmt.Fprintf(&b, "\x1b[%dA", s.row)
	}
	b.WriteString("\r\x1b[J")
	_, _ = io.WriteString(s.w, b.String())
	s.row = 0
}

// redraw draws the prompt and the line again. s.mu is held.
func (s *termScreen) redraw() {
	s.erase()
	s.draw()
}

// draw draws the prompt and the line from the start of the cursor's row,
// and puts the cursor at its place in the line. s.mu is held.
func (s *termScreen) draw() {
	var b strings.Builder
	b.WriteString(s.prompt)
	b.WriteString(string(s.line))
	// Where each character goes: a character too wide for what is left of
	// a row goes to the next one, as terminals do.
	row, col := 0, 0
	place := func(r rune) {
		w := runeWidth(r)
		if col+w > s.width {
			row, col = row+1, 0
		}
		col += w
	}
	for _, r := range stripEscapes(s.prompt) {
		place(r)
	}
	var curRow, curCol int
	for i, r := range s.line {
		if i == s.pos {
			if col+runeWidth(r) > s.width {
				curRow, curCol = row+1, 0
			} else {
				curRow, curCol = row, col
			}
		}
		place(r)
	}
	if s.pos == len(s.line) {
		curRow, curCol = row, col
	}
	if curCol == s.width { // the cursor goes to the start of the next row
		curRow, curCol = curRow+1, 0
	}
	if col == s.width {
		// A terminal leaves the cursor on the last column of a full row
		// until something more is written: move it to the next row.
		b.WriteString("\r\n")
		row, col = row+1, 0
	}
	if up := row - curRow; up > 0 {
		fmt.Fprintf(&b, "\x1b[%dA", up)
	}
	if col != curCol {
		b.WriteString("\r")
		if curCol > 0 {
			fmt.Fprintf(&b, "\x1b[%dC", curCol)
		}
	}
	_, _ = io.WriteString(s.w, b.String())
	s.row = curRow
}

func (s *termScreen) println(line string) {
	s.resize()
	s.mu.Lock()
	defer s.mu.Unlock()
	s.erase()
	_, _ = io.WriteString(s.w, strings.ReplaceAll(line, "\n", "\r\n")+"\r\n")
	s.draw()
}

func (s *termScreen) setTyping(text string) {
	s.setPrompt(text)
	s.mu.Lock()
	defer s.mu.Unlock()
	s.redraw()
}

func (s *termScreen) setPrompt(typing string) {
	p := s.st.bold(promptText)
	if typing != "" {
		p = s.st.dim(typing) + " " + p
	}
	s.mu.Lock()
	s.prompt = p
	s.mu.Unlock()
}

func (s *termScreen) onKey(f func(string)) {
	s.mu.Lock()
	s.key = f
	s.mu.Unlock()
}

func (s *termScreen) close() {
	// Erase the prompt, which the shell's would follow.
	s.mu.Lock()
	s.erase()
	s.mu.Unlock()
	if s.restore != nil {
		s.restore()
	}
}

// resize learns the terminal's width.
func (s *termScreen) resize() {
	if s.size == nil {
		return
	}
	w, _, err := s.size()
	if err != nil || w <= 0 {
		return
	}
	s.mu.Lock()
	s.width = w
	s.mu.Unlock()
}

// stripEscapes returns s without its escape sequences.
func stripEscapes(s string) string {
	var b strings.Builder
	esc := false
	for _, r := range s {
		switch {
		case esc:
			esc = !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z')
		case r == '\x1b':
			esc = true
		default:
			b.WriteRune(r)
		}
	}
	return b.String()
}

// stringWidth returns the number of columns s takes on a terminal.
func stringWidth(s string) int {
	n := 0
	for _, r := range s {
		n += runeWidth(r)
	}
	return n
}

// runeWidth returns the number of columns r takes on a terminal: 0 for
// combining marks and other characters of no width, 2 for East Asian wide
// and fullwidth characters (and emoji), 1 for the others.
func runeWidth(r rune) int {
	switch {
	case r < 0x20 || r == 0x7f:
		return 0
	case r < 0x300:
		return 1
	case unicode.In(r, unicode.Mn, unicode.Me, unicode.Cf) || r >= 0x1160 && r <= 0x11ff:
		return 0 // combining marks, joiners, the vowels and finals of Hangul Jamo
	}
	_, wide := slices.BinarySearchFunc(wideRanges, r, func(rg [2]rune, r rune) int {
		switch {
		case rg[1] < r:
			return -1
		case rg[0] > r:
			return 1
		}
		return 0
	})
	if wide {
		return 2
	}
	return 1
}

// wideRanges are the characters that take two columns (East Asian Width
// W or F, in Unicode 15), in order.
var wideRanges = [][2]rune{
	{0x1100, 0x115f}, {0x231a, 0x231b}, {0x2329, 0x232a}, {0x23e9, 0x23ec}, {0x23f0, 0x23f0},
	{0x23f3, 0x23f3}, {0x25fd, 0x25fe}, {0x2614, 0x2615}, {0x2648, 0x2653}, {0x267f, 0x267f},
	{0x2693, 0x2693}, {0x26a1, 0x26a1}, {0x26aa, 0x26ab}, {0x26bd, 0x26be}, {0x26c4, 0x26c5},
	{0x26ce, 0x26ce}, {0x26d4, 0x26d4}, {0x26ea, 0x26ea}, {0x26f2, 0x26f3}, {0x26f5, 0x26f5},
	{0x26fa, 0x26fa}, {0x26fd, 0x26fd}, {0x2705, 0x2705}, {0x270a, 0x270b}, {0x2728, 0x2728},
	{0x274c, 0x274c}, {0x274e, 0x274e}, {0x2753, 0x2755}, {0x2757, 0x2757}, {0x2795, 0x2797},
	{0x27b0, 0x27b0}, {0x27bf, 0x27bf}, {0x2b1b, 0x2b1c}, {0x2b50, 0x2b50}, {0x2b55, 0x2b55},
	{0x2e80, 0x303e}, {0x3041, 0x33ff}, {0x3400, 0x4dbf}, {0x4e00, 0x9fff}, {0xa000, 0xa4cf},
	{0xa960, 0xa97f}, {0xac00, 0xd7a3}, {0xf900, 0xfaff}, {0xfe10, 0xfe19}, {0xfe30, 0xfe6f},
	{0xff00, 0xff60}, {0xffe0, 0xffe6}, {0x16fe0, 0x16fe4}, {0x17000, 0x18cd5}, {0x1aff0, 0x1b2fb},
	{0x1f004, 0x1f004}, {0x1f0cf, 0x1f0cf}, {0x1f18e, 0x1f18e}, {0x1f191, 0x1f19a}, {0x1f200, 0x1f251},
	{0x1f260, 0x1f265}, {0x1f300, 0x1f320}, {0x1f32d, 0x1f335}, {0x1f337, 0x1f37c}, {0x1f37e, 0x1f393},
	{0x1f3a0, 0x1f3ca}, {0x1f3cf, 0x1f3d3}, {0x1f3e0, 0x1f3f0}, {0x1f3f4, 0x1f3f4}, {0x1f3f8, 0x1f43e},
	{0x1f440, 0x1f440}, {0x1f442, 0x1f4fc}, {0x1f4ff, 0x1f53d}, {0x1f54b, 0x1f54e}, {0x1f550, 0x1f567},
	{0x1f57a, 0x1f57a}, {0x1f595, 0x1f596}, {0x1f5a4, 0x1f5a4}, {0x1f5fb, 0x1f64f}, {0x1f680, 0x1f6c5},
	{0x1f6cc, 0x1f6cc}, {0x1f6d0, 0x1f6d2}, {0x1f6d5, 0x1f6d7}, {0x1f6dc, 0x1f6df}, {0x1f6eb, 0x1f6ec},
	{0x1f6f4, 0x1f6fc}, {0x1f7e0, 0x1f7eb}, {0x1f7f0, 0x1f7f0}, {0x1f90c, 0x1f93a}, {0x1f93c, 0x1f945},
	{0x1f947, 0x1f9ff}, {0x1fa70, 0x1fa7c}, {0x1fa80, 0x1fa88}, {0x1fa90, 0x1fabd}, {0x1fabf, 0x1fac5},
	{0x1face, 0x1fadb}, {0x1fae0, 0x1fae8}, {0x1faf0, 0x1faf8}, {0x20000, 0x2fffd}, {0x30000, 0x3fffd},
}
