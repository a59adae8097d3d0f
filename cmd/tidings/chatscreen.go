package main

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"unicode"
	"unicode/utf8"

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
// prompt.
type termScreen struct {
	t       *term.Terminal
	w       io.Writer // the terminal, under t
	st      style
	size    func() (width, height int, err error) // nil: 80 columns
	restore func()

	mu     sync.Mutex
	width  int
	prompt string // as shown, escape sequences included
	key    func(line string)
}

const promptText = "> "

func newTermScreen(rw io.ReadWriter, st style) *termScreen {
	s := &termScreen{t: term.NewTerminal(rw, ""), w: rw, st: st, width: 80}
	s.setPrompt("")
	s.t.AutoCompleteCallback = func(line string, pos int, key rune) (string, int, bool) {
		s.mu.Lock()
		f := s.key
		s.mu.Unlock()
		if f != nil && unicode.IsPrint(key) {
			f(line[:pos] + string(key) + line[pos:])
		}
		return "", 0, false
	}
	return s
}

func (s *termScreen) readLine() (string, error) {
	s.resize()
	line, err := s.t.ReadLine()
	if errors.Is(err, term.ErrPasteIndicator) {
		err = nil
	}
	if err != nil {
		return "", err
	}
	// The line stays where it was typed: erase it, for the chat shows
	// what it makes of it.
	s.mu.Lock()
	n := visibleLen(s.prompt) + utf8.RuneCountInString(line)
	rows := max(1, (n+s.width-1)/s.width)
	s.mu.Unlock()
	fmt.Fprintf(s.t, "\x1b[%dA\x1b[J", rows)
	return line, nil
}

func (s *termScreen) println(line string) {
	s.resize()
	fmt.Fprintf(s.t, "%s\n", line)
}

func (s *termScreen) setTyping(text string) {
	s.setPrompt(text)
	_, _ = s.t.Write(nil) // draws the prompt again
}

func (s *termScreen) setPrompt(typing string) {
	p := s.st.bold(promptText)
	if typing != "" {
		p = s.st.dim(typing) + " " + p
	}
	s.mu.Lock()
	s.prompt = p
	s.mu.Unlock()
	s.t.SetPrompt(p)
}

func (s *termScreen) onKey(f func(string)) {
	s.mu.Lock()
	s.key = f
	s.mu.Unlock()
}

func (s *termScreen) close() {
	// Erase the prompt, which the shell's would follow.
	_, _ = io.WriteString(s.w, "\r\x1b[K")
	if s.restore != nil {
		s.restore()
	}
}

// resize gives the terminal's width to the line editor.
func (s *termScreen) resize() {
	if s.size == nil {
		return
	}
	w, h, err := s.size()
	if err != nil || w <= 0 {
		return
	}
	s.mu.Lock()
	changed := w != s.width
	s.width = w
	s.mu.Unlock()
	if changed {
		_ = s.t.SetSize(w, h)
	}
}

// visibleLen is the length of s on the screen, escape sequences left out.
func visibleLen(s string) int {
	n, esc := 0, false
	for _, r := range s {
		switch {
		case esc:
			esc = !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z')
		case r == '\x1b':
			esc = true
		default:
			n++
		}
	}
	return n
}
