package main

import (
	"fmt"
	"strings"
	"unicode"

	"github.com/tidings/tidings"
)

// How the terminal client shows the content of messages, which other
// users wrote: as text that cannot move the cursor, change colours or
// otherwise take over the terminal.

// messageText returns the parts of a message as text, one string per part
// joined by spaces: text parts as they are, others as a short description
// in brackets. The text may hold newlines; see printable.
func messageText(m *tidings.Message) string {
	if m.DeletedAt != nil {
		return "(deleted)"
	}
	var b strings.Builder
	for i, p := range m.Parts {
		if i > 0 {
			b.WriteByte(' ')
		}
		b.WriteString(partText(p))
	}
	return b.String()
}

func partText(p tidings.Part) string {
	switch {
	case p.FileID != "":
		name := p.Name
		if name == "" {
			name = p.FileID
		}
		return fmt.Sprintf("[file %s, %s, %s]", name, p.Type, byteSize(p.Size))
	case p.Type == "text/plain" || strings.HasPrefix(p.Type, "text/"):
		return p.Data
	default:
		return fmt.Sprintf("[%s, %s]", p.Type, byteSize(int64(len(p.Data))))
	}
}

// byteSize formats a size for people: 27 B, 3.1 KiB, 12 MiB.
func byteSize(n int64) string {
	switch {
	case n < 1<<10:
		return fmt.Sprintf("%d B", n)
	case n < 1<<20:
		return fmt.Sprintf("%.1f KiB", float64(n)/(1<<10))
	case n < 1<<30:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	}
	return fmt.Sprintf("%.1f GiB", float64(n)/(1<<30))
}

// printable returns one line of s fit for a terminal: tabs become spaces,
// and other control characters (escape sequences, carriage returns,
// newlines) the replacement character, so that nothing but what the user
// sees is written.
func printable(s string) string {
	return strings.Map(func(r rune) rune {
		switch {
		case r == '\t':
			return ' '
		case unicode.IsControl(r) || r == '\u2028' || r == '\u2029':
			return unicode.ReplacementChar
		}
		return r
	}, s)
}

// lines splits text into printable lines.
func lines(text string) []string {
	text = strings.ReplaceAll(text, "\r\n", "\n")
	ls := strings.Split(text, "\n")
	for i, l := range ls {
		ls[i] = printable(l)
	}
	return ls
}

// oneLine returns text as one printable line, its line breaks shown as ↵.
func oneLine(text string) string {
	return strings.Join(lines(text), " ↵ ")
}
