// Package loadgen is a load generator for a Tidings server: scenarios that
// connect many clients, send messages through the API or the realtime
// socket, and measure what comes back: deliveries per second, latency
// percentiles, lost and duplicated updates, and what it cost the server
// (CPU time and memory, read from /proc).
//
// Each scenario has its own file: fanout.go (one conversation, many
// receivers), connections.go (idle connections), persist.go (durable
// sends), reconnect.go (a reconnect storm) and poll.go (fan-out over long
// polling). The command "tidings bench" runs them.
//
// It targets 127.0.0.1 unless told otherwise, and every loop is bounded in
// count and time.
package loadgen

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Config is what every scenario needs.
type Config struct {
	// URL is the server's base URL (default http://127.0.0.1:8080), or
	// the base URLs of the nodes of a cluster separated by commas: the
	// realtime connections are then spread over the nodes in turn, the
	// setup requests go to the first, and the server CPU and memory
	// reported are the sum over the nodes' processes.
	URL string
	// Key is the server key of the app whose users the benchmark creates.
	Key string
	// AllowRemote allows a server that is not on a loopback address.
	AllowRemote bool
	// Duration is how long the measured phase lasts.
	Duration time.Duration
	// Sources is the number of loopback source addresses the connections
	// are spread over (127.0.0.1, 127.0.0.2…), each having its own
	// ephemeral ports.
	Sources int
	// ServerPID is the process whose CPU time and memory are measured;
	// 0 finds the process listening on the server's port, if visible.
	ServerPID int
	// Run prefixes the ids of the users and conversations created
	// (default: a new one each run).
	Run string
	// Workers is the number of concurrent requests and connection
	// attempts during setup (default 32).
	Workers int
	// Progress receives a status line every second (nil: none).
	Progress io.Writer
}

// env is a scenario's view of the server.
type env struct {
	cfg       Config
	api       *api
	dialer    *dialer
	ws        wsTarget
	pid       int   // the first node's process (0: not known)
	pids      []int // every node's process, when all are known
	pidErr    error
	fileLimit uint64
	prog      *progress
	notes     []string
}

func (c Config) open(scenario string) (*env, error) {
	if c.URL == "" {
		c.URL = "http://127.0.0.1:8080"
	}
	var bases []string
	var ports []int
	for _, raw := range strings.Split(c.URL, ",") {
		raw = strings.TrimSuffix(strings.TrimSpace(raw), "/")
		u, err := url.Parse(raw)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return nil, fmt.Errorf("the server URL %q is not an http:// or https:// URL", raw)
		}
		if err := checkLoopback(u.Hostname(), c.AllowRemote); err != nil {
			return nil, err
		}
		port, _ := strconv.Atoi(u.Port())
		if port == 0 {
			port = map[string]int{"http": 80, "https": 443}[u.Scheme]
		}
		bases, ports = append(bases, raw), append(ports, port)
	}
	if c.Key == "" {
		return nil, errors.New("the app's server key is missing: give --key or set TIDINGS_SERVER_KEY (get one with \"tidings apps rotate-key default\")")
	}
	if c.Duration <= 0 {
		c.Duration = 10 * time.Second
	}
	if c.Workers <= 0 {
		c.Workers = 32
	}
	if c.Sources <= 0 {
		c.Sources = 4
	}
	if c.Run == "" {
		c.Run = "b" + strconv.FormatInt(time.Now().UnixMilli(), 36)
	}
	c.URL = bases[0]
	e := &env{cfg: c, dialer: newDialer(c.Sources)}
	e.api = newAPI(c.URL, c.Key, e.dialer, c.Workers*2)
	e.ws = wsTarget{dialer: e.dialer, next: new(atomic.Uint64)}
	for _, b := range bases {
		e.ws.urls = append(e.ws.urls, "ws"+strings.TrimPrefix(b, "http")+"/v1/realtime")
	}
	var err error
	e.fileLimit, err = RaiseFileLimit()
	if err != nil {
		e.note("could not raise the open-file limit: %v", err)
	}
	e.pid = c.ServerPID
	switch {
	case e.pid != 0 && len(bases) > 1:
		e.note("server CPU and memory are those of the process %d only (--server-pid), not of every node", e.pid)
		e.pids = []int{e.pid}
	case e.pid != 0:
		e.pids = []int{e.pid}
	default:
		for _, port := range ports {
			pid, err := FindListener(port)
			if err != nil {
				e.pids, e.pidErr = nil, err
				e.note("server CPU and memory not measured: %v (give --server-pid)", err)
				break
			}
			e.pids = append(e.pids, pid)
		}
		if len(e.pids) > 0 {
			e.pid = e.pids[0]
		}
	}
	if len(bases) > 1 {
		e.note("%d nodes: connections spread over them in turn; setup through %s", len(bases), bases[0])
	}
	e.prog = newProgress(c.Progress, scenario)
	return e, nil
}

// note records a remark for the summary.
func (e *env) note(format string, args ...any) {
	e.notes = append(e.notes, fmt.Sprintf(format, args...))
}

// id returns the id of the i-th object of a kind created by this run.
func (e *env) id(kind string, i int) string {
	return fmt.Sprintf("%s-%s%d", e.cfg.Run, kind, i)
}

// server samples the server's processes, summed over the nodes (ok false
// when they are not known).
func (e *env) server() (ProcSample, bool) {
	if len(e.pids) == 0 {
		return ProcSample{}, false
	}
	var sum ProcSample
	for _, pid := range e.pids {
		s, err := SampleProc(pid)
		if err != nil {
			return ProcSample{}, false
		}
		sum.At, sum.CPU, sum.RSS = s.At, sum.CPU+s.CPU, sum.RSS+s.RSS
	}
	return sum, true
}

// meter measures the CPU time of the server and of this process over a
// phase.
type meter struct {
	e          *env
	srv0, self ProcSample
	srvOK      bool
}

func (e *env) startMeter() *meter {
	m := &meter{e: e, self: SampleSelf()}
	m.srv0, m.srvOK = e.server()
	return m
}

// Usage is the CPU time and memory of a process over a phase.
type Usage struct {
	CPUSeconds float64 `json:"cpuSeconds"`
	// CPUPercent is CPU time over wall time: 100 is one core busy.
	CPUPercent float64 `json:"cpuPercent"`
	RSSBytes   int64   `json:"rssBytes"` // at the end of the phase
}

func usage(a, b ProcSample) *Usage {
	wall := b.At.Sub(a.At).Seconds()
	cpu := (b.CPU - a.CPU).Seconds()
	u := &Usage{CPUSeconds: cpu, RSSBytes: b.RSS}
	if wall > 0 {
		u.CPUPercent = 100 * cpu / wall
	}
	return u
}

// stop returns the usage of the server (nil if unknown) and of this
// process since the meter started.
func (m *meter) stop() (server, tool *Usage) {
	tool = usage(m.self, SampleSelf())
	if m.srvOK {
		if s, ok := m.e.server(); ok {
			server = usage(m.srv0, s)
		}
	}
	return server, tool
}

// sleep waits for d or until ctx ends.
func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// waitFor polls cond every 10ms until it is true, ctx ends or timeout
// passes; it reports whether cond became true.
func waitFor(ctx context.Context, timeout time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) || ctx.Err() != nil {
			return false
		}
		time.Sleep(10 * time.Millisecond)
	}
	return true
}

// drain waits until count reaches want, for as long as it keeps growing
// (it gives up after 3 s without progress) and at most limit.
func drain(ctx context.Context, limit time.Duration, count func() int64, want int64) {
	deadline := time.Now().Add(limit)
	last, lastChange := count(), time.Now()
	for last < want && time.Now().Before(deadline) && time.Since(lastChange) < 3*time.Second {
		if sleep(ctx, 20*time.Millisecond) != nil {
			return
		}
		if c := count(); c != last {
			last, lastChange = c, time.Now()
		}
	}
}

func parseHostPort(rawURL string) (string, error) {
	u, err := url.Parse(rawURL)
	if err != nil {
		return "", err
	}
	port := u.Port()
	if port == "" {
		port = map[string]string{"ws": "80", "wss": "443", "http": "80", "https": "443"}[u.Scheme]
	}
	return net.JoinHostPort(u.Hostname(), port), nil
}

// progress prints a status line every second: on a terminal it rewrites
// one line, elsewhere it writes one line per second.
type progress struct {
	w        io.Writer
	name     string
	tty      bool
	mu       sync.Mutex
	status   func() string
	stop     chan struct{}
	done     chan struct{}
	lastLen  int
	started  time.Time
	stopOnce sync.Once
}

func newProgress(w io.Writer, name string) *progress {
	p := &progress{w: w, name: name, started: time.Now(), stop: make(chan struct{}), done: make(chan struct{})}
	if f, ok := w.(*os.File); ok {
		if st, err := f.Stat(); err == nil && st.Mode()&os.ModeCharDevice != 0 {
			p.tty = true
		}
	}
	if w == nil {
		close(p.done)
		return p
	}
	go p.loop()
	return p
}

// set changes what the status line says.
func (p *progress) set(status func() string) {
	p.mu.Lock()
	p.status = status
	p.mu.Unlock()
}

func (p *progress) loop() {
	defer close(p.done)
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		select {
		case <-p.stop:
			if p.tty && p.lastLen > 0 {
				fmt.Fprint(p.w, "\r\x1b[K")
			}
			return
		case <-t.C:
		}
		p.mu.Lock()
		status := p.status
		p.mu.Unlock()
		if status == nil {
			continue
		}
		line := fmt.Sprintf("[%s %3.0fs] %s", p.name, time.Since(p.started).Seconds(), status())
		if p.tty {
			fmt.Fprintf(p.w, "\r\x1b[K%s", line)
			p.lastLen = len(line)
		} else {
			fmt.Fprintln(p.w, line)
		}
	}
}

func (p *progress) close() {
	p.stopOnce.Do(func() {
		if p.w != nil {
			close(p.stop)
		}
	})
	<-p.done
}
