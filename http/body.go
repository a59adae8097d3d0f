package http

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"sync"
	"time"

	"github.com/tidings/tidings"
)

// Defaults of the limits on reading request bodies.
const (
	DefaultMaxBodyReads = 64
	DefaultBodyTimeout  = 30 * time.Second
	DefaultBodyMinRate  = 64 << 10 // bytes per second
)

// bodyWait is how long a request waits for its turn to read its body
// when MaxBodyReads bodies are being read, before it is answered 503.
const bodyWait = time.Second

// errBodyTimeout ends the read of a body that did not come in time.
var errBodyTimeout = errors.New("request body not received in time")

// bodyTimeoutError is the answer to a body that did not come in time.
func (s *Server) bodyTimeoutError() error {
	return tidings.Errorf(tidings.EInvalid, "the request body did not arrive in time: send it within %s, and at least %d bytes a second after that",
		s.bodyTimeout(), s.bodyMinRate())
}

// admitBody bounds the reading of r's body, if it has one: it waits for
// one of the MaxBodyReads turns to read a body (up to bodyWait, else an
// unavailable error), then replaces r.Body by one that gives the turn back
// once read, and that must come within BodyTimeout plus its size at
// BodyMinRate (and within the server's ReadTimeout, as always). The
// caller calls done when the request is served.
func (s *Server) admitBody(w http.ResponseWriter, r *http.Request) (done func(), err error) {
	if r.Body == nil || r.Body == http.NoBody {
		return func() {}, nil
	}
	timer := time.NewTimer(bodyWait)
	defer timer.Stop()
	select {
	case s.bodyTurns <- struct{}{}:
	case <-timer.C:
		return nil, &tidings.RetryError{After: time.Second, Err: tidings.Errorf(tidings.EUnavailable,
			"the server is reading too many request bodies at once; try again in a moment")}
	case <-r.Context().Done():
		return nil, r.Context().Err()
	}
	start := time.Now()
	b := &timedBody{
		rc:      r.Body,
		ctl:     http.NewResponseController(w),
		start:   start,
		timeout: s.bodyTimeout(),
		minRate: s.bodyMinRate(),
		release: func() { <-s.bodyTurns },
	}
	if s.ReadTimeout > 0 {
		b.hard = start.Add(s.ReadTimeout)
	}
	r.Body = b
	return b.done, nil
}

func (s *Server) bodyTimeout() time.Duration {
	if s.BodyTimeout <= 0 {
		return DefaultBodyTimeout
	}
	return s.BodyTimeout
}

func (s *Server) bodyMinRate() int64 {
	if s.BodyMinRate <= 0 {
		return DefaultBodyMinRate
	}
	return s.BodyMinRate
}

// timedBody is a request body read under a deadline that moves on with
// what has been read: start + timeout + read/minRate, never past hard.
type timedBody struct {
	rc       io.ReadCloser
	ctl      *http.ResponseController
	start    time.Time
	timeout  time.Duration
	minRate  int64
	hard     time.Time // the server's ReadTimeout; zero if none
	read     int64
	deadline time.Time // the one set on the connection
	once     sync.Once
	release  func()
	finished bool
}

func (b *timedBody) Read(p []byte) (int, error) {
	if b.finished {
		return 0, io.EOF
	}
	d := b.start.Add(b.timeout + time.Duration(float64(b.read)/float64(b.minRate)*float64(time.Second)))
	if !b.hard.IsZero() && d.After(b.hard) {
		d = b.hard
	}
	// Move it by a second at least, so as not to set it on every read.
	if d.Sub(b.deadline) >= time.Second || d.Before(b.deadline) {
		_ = b.ctl.SetReadDeadline(d) // without a deadline, ReadTimeout still holds
		b.deadline = d
	}
	n, err := b.rc.Read(p)
	b.read += int64(n)
	if err != nil {
		if errors.Is(err, os.ErrDeadlineExceeded) {
			err = fmt.Errorf("%w: %w", errBodyTimeout, err)
		}
		if err == io.EOF {
			b.finished = true
			// The body is read: the connection waits for the next request
			// under the server's own timeouts, which it sets.
			_ = b.ctl.SetReadDeadline(time.Time{})
		}
		b.done()
	}
	return n, err
}

func (b *timedBody) Close() error {
	b.done()
	return b.rc.Close()
}

// done gives the turn back, once.
func (b *timedBody) done() { b.once.Do(b.release) }
