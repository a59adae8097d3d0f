package main

import (
	"encoding/json"
	"fmt"
	"image/png"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tidings/tidings/loadgen"
)

// TestBenchScenarios runs each load scenario with a handful of clients
// against a real server: the tool keeps working, and finds nothing lost or
// duplicated. It checks counts, never speeds: the fanout scenarios send a
// fixed number of messages and every subscriber must get each of them.
func TestBenchScenarios(t *testing.T) {
	dir := t.TempDir()
	url, stop := startServe(t, dir)
	defer stop()
	key := parseApp(t, mustRun(t, nil, "apps", "rotate-key", "--data", dir, "default").stdout)["server key"]
	env := map[string]string{"TIDINGS_SERVER_KEY": key}
	common := []string{"--url", url, "--json", "--workers", "4"}
	results := filepath.Join(t.TempDir(), "results.jsonl")
	const messages = 20
	// sentAll checks that a fanout-like run sent, and had acknowledged,
	// exactly the messages asked for (nothing lost is checked for all).
	sentAll := func(t *testing.T, r *loadgen.Result, connections int) {
		t.Helper()
		if r.Sent != messages || r.Acked != messages || r.Connections != connections {
			t.Errorf("sent %d, acknowledged %d on %d connections; want %d on %d: %+v",
				r.Sent, r.Acked, r.Connections, messages, connections, r)
		}
		if r.Latency == nil {
			t.Errorf("no latency: %+v", r)
		}
	}
	fixed := []string{"--messages", fmt.Sprint(messages), "--warmup", "1ms", "--settle", "10ms"}

	cases := []struct {
		args  []string
		check func(t *testing.T, r *loadgen.Result)
	}{
		{append([]string{"bench", "fanout", "--subscribers", "5", "--senders", "2", "--rate", "200"}, fixed...),
			func(t *testing.T, r *loadgen.Result) { sentAll(t, r, 7) }},
		{append([]string{"bench", "fanout", "--subscribers", "3", "--senders", "1", "--rate", "0", "--window", "2"}, fixed...),
			func(t *testing.T, r *loadgen.Result) { sentAll(t, r, 4) }},
		{append([]string{"bench", "poll", "--subscribers", "4", "--senders", "1", "--rate", "200"}, fixed...),
			func(t *testing.T, r *loadgen.Result) { sentAll(t, r, 5) }},
		{[]string{"bench", "connections", "--connections", "6", "--settle", "10ms", "--duration", "100ms"},
			func(t *testing.T, r *loadgen.Result) {
				if r.Connections != 6 {
					t.Errorf("connections: %+v", r)
				}
			}},
		{[]string{"bench", "persist", "--api-senders", "2", "--socket-senders", "2", "--duration", "300ms"},
			func(t *testing.T, r *loadgen.Result) {
				// Whatever was acknowledged is checked as delivered; the
				// socket senders may be refused some (rate_limited).
				if r.Acked != r.Sent-r.SendErrors {
					t.Errorf("persist: sent %d, acknowledged %d, refused %d", r.Sent, r.Acked, r.SendErrors)
				}
			}},
		{[]string{"bench", "rooms", "--rooms", "3", "--members", "3", "--rate", "30", "--duration", "500ms", "--warmup", "1ms"},
			func(t *testing.T, r *loadgen.Result) {
				// 9 members, each sending to and receiving from its room;
				// every acknowledged message reached the 2 others (checked
				// as nothing lost, for all).
				if r.Connections != 9 || r.Acked == 0 || r.Acked != r.Sent-r.SendErrors || r.Deliveries == 0 || r.Latency == nil {
					t.Errorf("rooms: %+v", r)
				}
			}},
		{[]string{"bench", "rooms", "--rooms", "2", "--members", "2", "--rate", "0", "--window", "1", "--duration", "300ms", "--warmup", "1ms"},
			func(t *testing.T, r *loadgen.Result) {
				if r.Connections != 4 || r.Acked == 0 || r.Acked != r.Sent-r.SendErrors {
					t.Errorf("rooms at saturation: %+v", r)
				}
			}},
		{[]string{"bench", "rooms", "--rooms", "2", "--members", "2", "--rate", "40", "--read-every", "1ms", "--duration", "500ms", "--warmup", "1ms"},
			func(t *testing.T, r *loadgen.Result) {
				// Members mark their room read as messages come: every
				// receipt is answered without an error, and the messages
				// still all arrive.
				if r.ReadReceipts == 0 || r.ReadReceiptErrors != 0 || r.Acked == 0 || r.Acked != r.Sent-r.SendErrors {
					t.Errorf("rooms with read receipts: %+v", r)
				}
			}},
		{[]string{"bench", "reconnect", "--clients", "5", "--missed", "4", "--rate", "50", "--duration", "100ms"},
			func(t *testing.T, r *loadgen.Result) {
				if r.CaughtUp != 5 || r.Missed < 4 {
					t.Errorf("reconnect: %+v", r)
				}
			}},
	}
	for _, c := range cases {
		t.Run(strings.Join(c.args[:2], "-"), func(t *testing.T) {
			res := runCLI(t, env, append(c.args, common...)...)
			if res.code != exitOK {
				t.Fatalf("exit code %d\nstdout:\n%s\nstderr:\n%s", res.code, res.stdout, res.stderr)
			}
			var r loadgen.Result
			if err := json.Unmarshal([]byte(res.stdout), &r); err != nil {
				t.Fatalf("summary is not JSON: %v\n%s", err, res.stdout)
			}
			if !r.OK() || r.Lost != 0 || r.Duplicated != 0 {
				t.Errorf("lost %d, duplicated %d, out of order %d, closed %d", r.Lost, r.Duplicated, r.OutOfOrder, r.UnexpectedClose)
			}
			if r.Machine.CPUs == 0 || r.Tool == nil {
				t.Errorf("no machine or tool usage: %+v", r)
			}
			c.check(t, &r)
			f, err := os.OpenFile(results, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o600)
			if err != nil {
				t.Fatal(err)
			}
			f.WriteString(res.stdout)
			f.Close()
		})
	}

	// The table says the same for people.
	res := mustRun(t, env, "bench", "fanout", "--url", url, "--messages", "5", "--warmup", "1ms", "--subscribers", "2", "--senders", "1", "--rate", "100")
	for _, want := range []string{"deliveries", "latency", "lost / duplicated", "0 / 0", "OK"} {
		if !strings.Contains(res.stdout, want) {
			t.Errorf("the table does not say %q:\n%s", want, res.stdout)
		}
	}

	png1 := filepath.Join(t.TempDir(), "latency.png")
	mustRun(t, nil, "bench", "plot", "-o", png1, results)
	f, err := os.Open(png1)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := png.Decode(f); err != nil {
		t.Errorf("the plot is not a PNG: %v", err)
	}
}

func TestBenchRefusesOtherHostsAndNeedsAKey(t *testing.T) {
	r := runCLI(t, map[string]string{"TIDINGS_SERVER_KEY": "k"}, "bench", "fanout", "--url", "http://192.0.2.1:8080")
	if r.code != exitFailure || !strings.Contains(r.stderr, "--allow-remote") {
		t.Errorf("a remote server: exit %d, stderr %s", r.code, r.stderr)
	}
	r = runCLI(t, nil, "bench", "connections")
	if r.code != exitUsage || !strings.Contains(r.stderr, "TIDINGS_SERVER_KEY") {
		t.Errorf("no key: exit %d, stderr %s", r.code, r.stderr)
	}
}
