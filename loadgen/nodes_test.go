package loadgen

import (
	"strings"
	"testing"
)

// TestConnectionsSpreadOverNodes: given the base URLs of a cluster's
// nodes, the load tool connects to each in turn, sets up through the
// first, and still refuses a node that is not on this machine.
func TestConnectionsSpreadOverNodes(t *testing.T) {
	cfg := Config{URL: "http://127.0.0.1:1/, http://127.0.0.1:2,http://localhost:3", Key: "k", ServerPID: 1}
	e, err := cfg.open("test")
	if err != nil {
		t.Fatal(err)
	}
	if e.cfg.URL != "http://127.0.0.1:1" {
		t.Errorf("setup URL = %q, want the first node's", e.cfg.URL)
	}
	var got []string
	for range 4 {
		got = append(got, e.ws.url())
	}
	want := []string{"ws://127.0.0.1:1/v1/realtime", "ws://127.0.0.1:2/v1/realtime", "ws://localhost:3/v1/realtime", "ws://127.0.0.1:1/v1/realtime"}
	if strings.Join(got, " ") != strings.Join(want, " ") {
		t.Errorf("connections go to %v, want %v", got, want)
	}

	cfg.URL = "http://127.0.0.1:1,http://192.0.2.1:2"
	if _, err := cfg.open("test"); err == nil || !strings.Contains(err.Error(), "192.0.2.1") {
		t.Errorf("a remote node among local ones: err = %v, want a refusal naming it", err)
	}
	cfg.URL = "http://127.0.0.1:1,ftp://127.0.0.1:2"
	if _, err := cfg.open("test"); err == nil || !strings.Contains(err.Error(), "ftp://127.0.0.1:2") {
		t.Errorf("a bad node URL: err = %v, want it named", err)
	}
}
