package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	cdplog "github.com/chromedp/cdproto/log"
	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"
)

// The helpers of the tests that drive the web page and the browser SDK in
// a real browser: Debian's chromium, headless, through the DevTools
// protocol (chromedp). Without chromium they skip, unless
// TIDINGS_REQUIRE_SERVICES=1 (as in CI), where they fail.

// requireService skips the test because a service it needs is missing, or
// fails it when TIDINGS_REQUIRE_SERVICES=1 says that services must be there.
func requireService(t *testing.T, format string, args ...any) {
	t.Helper()
	msg := fmt.Sprintf(format, args...)
	if os.Getenv("TIDINGS_REQUIRE_SERVICES") == "1" {
		t.Fatalf("%s (TIDINGS_REQUIRE_SERVICES=1)", msg)
	}
	t.Skip(msg)
}

// chromiumPath returns the browser to drive: $TIDINGS_CHROMIUM, or
// chromium on the PATH.
func chromiumPath(t *testing.T) string {
	t.Helper()
	if p := os.Getenv("TIDINGS_CHROMIUM"); p != "" {
		return p
	}
	for _, name := range []string{"chromium", "chromium-browser"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	requireService(t, "chromium is not installed (apt-get install chromium), or set TIDINGS_CHROMIUM to a Chrome or Chromium binary")
	return ""
}

// browser is one headless chromium process.
type browser struct {
	t   *testing.T
	ctx context.Context // the browser's first tab, kept open
}

// newBrowser starts chromium with a fresh profile; it stops with the test.
func newBrowser(t *testing.T) *browser {
	t.Helper()
	path := chromiumPath(t)
	opts := []chromedp.ExecAllocatorOption{
		chromedp.ExecPath(path),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.NoFirstRun,
		chromedp.NoDefaultBrowserCheck,
		chromedp.Headless,
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.WindowSize(1200, 800),
		// This machine's network is closed: keep chromium from reaching out.
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-default-apps", true),
		chromedp.Flag("disable-extensions", true),
		chromedp.Flag("no-proxy-server", true),
		chromedp.Flag("disable-dev-shm-usage", true),
		// Timers of pages in the background must not be throttled: two
		// users' pages run side by side.
		chromedp.Flag("disable-background-timer-throttling", true),
		chromedp.Flag("disable-renderer-backgrounding", true),
		chromedp.Flag("disable-backgrounding-occluded-windows", true),
	}
	alloc, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancel := chromedp.NewContext(alloc)
	if err := chromedp.Do(ctx); err != nil {
		cancel()
		cancelAlloc()
		t.Fatalf("start chromium %s: %v", path, err)
	}
	t.Cleanup(func() { cancel(); cancelAlloc() })
	return &browser{t: t, ctx: ctx}
}

// profile is one person's browser context: its own storage, like another
// browser. Pages opened in it share its localStorage.
type profile struct {
	b    *browser
	name string
	ctx  context.Context // a blank tab that keeps the context alive
}

func (b *browser) newProfile(name string) *profile {
	b.t.Helper()
	ctx, cancel := chromedp.NewContext(b.ctx, chromedp.WithNewBrowserContext())
	if err := chromedp.Do(ctx, chromedp.Navigate("about:blank")); err != nil {
		b.t.Fatalf("new browser context: %v", err)
	}
	b.t.Cleanup(cancel)
	return &profile{b: b, name: name, ctx: ctx}
}

// page is one open tab.
type page struct {
	t     *testing.T
	name  string
	ctx   context.Context
	close context.CancelFunc

	mu     sync.Mutex
	urls   []string // every URL the page requested, WebSockets included
	frames []string // every WebSocket message the page sent
	errors []string // what the browser logged as errors: failed requests, refused WebSockets…
}

// open opens url in a new tab of the profile, logging what the page
// prints to its console and recording the URLs it requests.
func (p *profile) open(url string) *page {
	t := p.b.t
	t.Helper()
	ctx, cancel := chromedp.NewContext(p.ctx)
	pg := &page{t: t, name: p.name, ctx: ctx, close: cancel}
	if err := chromedp.Do(ctx); err != nil {
		t.Fatalf("[%s] new tab: %v", p.name, err)
	}
	err := chromedp.Listen(ctx, func(ev any) {
		switch ev := ev.(type) {
		case *runtime.EventConsoleAPICalled:
			var args []string
			for _, a := range ev.Args {
				args = append(args, string(a.Value)+a.Description)
			}
			t.Logf("[%s console.%s] %s", p.name, ev.Type, strings.Join(args, " "))
		case *runtime.EventExceptionThrown:
			d := ev.ExceptionDetails
			desc := d.Text
			if d.Exception != nil {
				desc += " " + d.Exception.Description
			}
			t.Errorf("[%s] uncaught exception at %s:%d: %s", p.name, d.URL, d.LineNumber+1, desc)
		case *network.EventRequestWillBeSent:
			pg.mu.Lock()
			pg.urls = append(pg.urls, ev.Request.URL)
			pg.mu.Unlock()
		case *network.EventWebSocketCreated:
			pg.mu.Lock()
			pg.urls = append(pg.urls, ev.URL)
			pg.mu.Unlock()
		case *network.EventWebSocketFrameSent:
			if ev.Response != nil {
				pg.mu.Lock()
				pg.frames = append(pg.frames, string(ev.Response.PayloadData))
				pg.mu.Unlock()
			}
		case *cdplog.EventEntryAdded:
			if e := ev.Entry; e.Level == cdplog.EntryLevelError {
				pg.mu.Lock()
				pg.errors = append(pg.errors, fmt.Sprintf("%s: %s (%s)", e.Source, e.Text, e.URL))
				pg.mu.Unlock()
			}
		case *network.EventResponseReceived:
			if r := ev.Response; r.Status >= 400 {
				pg.mu.Lock()
				pg.errors = append(pg.errors, fmt.Sprintf("%d %s", r.Status, r.URL))
				pg.mu.Unlock()
			}
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := chromedp.Do(ctx, chromedp.Navigate(url)); err != nil {
		t.Fatalf("[%s] open %s: %v", p.name, url, err)
	}
	t.Cleanup(cancel)
	return pg
}

// requested returns the URLs the page requested so far.
func (pg *page) requested() []string {
	pg.mu.Lock()
	defer pg.mu.Unlock()
	return append([]string(nil), pg.urls...)
}

// sentFrames returns the WebSocket messages the page sent so far, in order.
func (pg *page) sentFrames() []string {
	pg.mu.Lock()
	defer pg.mu.Unlock()
	return append([]string(nil), pg.frames...)
}

// loggedErrors returns what the browser logged as errors so far, and the
// requests answered with an error status.
func (pg *page) loggedErrors() []string {
	pg.mu.Lock()
	defer pg.mu.Unlock()
	return append([]string(nil), pg.errors...)
}

// run runs chromedp actions on the page, failing the test on an error.
func (pg *page) run(actions ...chromedp.Action[chromedp.Void]) {
	pg.t.Helper()
	ctx, cancel := context.WithTimeout(pg.ctx, 30*time.Second)
	defer cancel()
	if err := chromedp.Do(ctx, actions...); err != nil {
		pg.t.Fatalf("[%s] %v", pg.name, err)
	}
}

// eval evaluates a JavaScript expression (awaiting it if it is a promise)
// and decodes its JSON value into out.
func (pg *page) eval(expr string, out any) {
	pg.t.Helper()
	ctx, cancel := context.WithTimeout(pg.ctx, 60*time.Second)
	defer cancel()
	raw, err := chromedp.Run(ctx, chromedp.Evaluate[[]byte](expr, chromedp.EvalAwaitPromise))
	if err != nil {
		pg.t.Fatalf("[%s] evaluate %.200s: %v", pg.name, expr, err)
	}
	if err := json.Unmarshal(raw, out); err != nil {
		pg.t.Fatalf("[%s] evaluate %.200s: result %.200s: %v", pg.name, expr, raw, err)
	}
}

// waitFor waits until the JavaScript expression is true, and fails the
// test with what describe (an expression too) says if it never becomes so.
func (pg *page) waitFor(what, expr, describe string) {
	pg.t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		var ok bool
		pg.eval("!!("+expr+")", &ok)
		if ok {
			return
		}
		if time.Now().After(deadline) {
			var state any
			if describe != "" {
				pg.eval(describe, &state)
			}
			pg.t.Fatalf("[%s] waited 30s for %s; state: %v", pg.name, what, state)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// js quotes s as a JavaScript string.
func js(s string) string {
	b, _ := json.Marshal(s)
	return string(b)
}
