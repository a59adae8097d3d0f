package loadgen

import (
	"bytes"
	"strconv"
	"strings"
	"time"
)

// A bench message's text starts with a marker naming its sender, its
// sequence number and when it was sent, so that a receiver can check for
// loss and duplicates and measure latency without decoding the whole
// update: "tb:3:1207:1764000000123456789;" then padding up to the
// message size.

const markerPrefix = "tb:"

// messageText returns the text of message seq of sender, sent at t,
// padded with 'x' to size bytes (longer if the marker needs it).
func messageText(sender, seq int, t time.Time, size int) string {
	b := make([]byte, 0, max(size, 48))
	b = append(b, markerPrefix...)
	b = strconv.AppendInt(b, int64(sender), 10)
	b = append(b, ':')
	b = strconv.AppendInt(b, int64(seq), 10)
	b = append(b, ':')
	b = strconv.AppendInt(b, t.UnixNano(), 10)
	b = append(b, ';')
	for len(b) < size {
		b = append(b, 'x')
	}
	return string(b)
}

// marker is what a message's text says about it.
type marker struct {
	sender, seq int
	sent        time.Time
}

var markerQuoted = []byte(`"` + markerPrefix)

// findMarker finds the marker of a bench message in an encoded update.
func findMarker(frame []byte) (marker, bool) {
	i := bytes.Index(frame, markerQuoted)
	if i < 0 {
		return marker{}, false
	}
	b := frame[i+len(markerQuoted):]
	var nums [3]int64
	for k := range nums {
		n, rest, ok := leadingInt(b)
		if !ok || len(rest) == 0 || rest[0] != ":;"[k/2] {
			return marker{}, false
		}
		nums[k], b = n, rest[1:]
	}
	return marker{sender: int(nums[0]), seq: int(nums[1]), sent: time.Unix(0, nums[2])}, true
}

// parseMarker reads the marker at the start of a message's text.
func parseMarker(text string) (marker, bool) {
	if !strings.HasPrefix(text, markerPrefix) {
		return marker{}, false
	}
	return findMarker([]byte(`"` + text))
}

// leadingInt parses the decimal digits at the start of b.
func leadingInt(b []byte) (int64, []byte, bool) {
	var n int64
	i := 0
	for ; i < len(b) && b[i] >= '0' && b[i] <= '9' && i < 19; i++ {
		n = n*10 + int64(b[i]-'0')
	}
	return n, b[i:], i > 0
}

var (
	updatePrefix = []byte(`{"type":"update"`)
	refKey       = []byte(`"ref":"`)
)

// isUpdate reports whether an encoded frame is an update (the server
// writes "type" first).
func isUpdate(frame []byte) bool { return bytes.HasPrefix(frame, updatePrefix) }

// updateRef returns the ref of an encoded update, 0 for a live-only one.
// The ref comes before the event, so that a ref inside a message cannot be
// taken for it.
func updateRef(frame []byte) int64 {
	end := bytes.Index(frame, []byte(`"event":`))
	if end < 0 {
		end = len(frame)
	}
	i := bytes.Index(frame[:end], refKey)
	if i < 0 {
		return 0
	}
	n, _, ok := leadingInt(frame[i+len(refKey):])
	if !ok {
		return 0
	}
	return n
}

// eachFrame calls f for every frame of a server message (frames are
// separated by '\n').
func eachFrame(msg []byte, f func([]byte)) {
	for len(msg) > 0 {
		i := bytes.IndexByte(msg, '\n')
		if i < 0 {
			f(msg)
			return
		}
		if i > 0 {
			f(msg[:i])
		}
		msg = msg[i+1:]
	}
}
