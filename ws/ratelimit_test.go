package ws_test

import (
	"fmt"
	nethttp "net/http"
	"strings"
	"testing"

	"github.com/tidings/tidings"
	"github.com/tidings/tidings/protocol"
	"github.com/tidings/tidings/ratelimit"
	"github.com/tidings/tidings/realtime"
	"github.com/tidings/tidings/ws"
)

// A user has one budget over REST and the socket, and over all their
// connections: using both does not double it.
func TestOneRateLimitOverRESTAndSocket(t *testing.T) {
	s := startStack(t, func(n *realtime.Node, _ *ws.Handler) {
		// A slow refill, so that the counts do not depend on the machine.
		n.Limits = ratelimit.New(ratelimit.Config{User: ratelimit.Limit{Rate: 0.01, Burst: 10}})
	})
	s.mkUsers("a", "alice", "bob")
	conv := s.conv("a", "alice", "bob")
	tok := s.token("a", "alice")
	rest := func(text string) int {
		req, _ := nethttp.NewRequest("POST", s.srv.URL()+"/v1/conversations/"+conv+"/messages",
			strings.NewReader(`{"parts":[{"type":"text/plain","data":"`+text+`"}]}`))
		req.Header.Set("Authorization", "Bearer "+tok)
		req.Header.Set("Content-Type", "application/json")
		resp, err := nethttp.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode == nethttp.StatusTooManyRequests && resp.Header.Get("Retry-After") == "" {
			t.Error("a 429 without Retry-After")
		}
		return resp.StatusCode
	}
	c1, c2 := dial(t, s), dial(t, s)
	c1.auth("", tok, protocol.AuthArgs{})
	c2.auth("", tok, protocol.AuthArgs{})

	accepted := 0
	for i := 0; i < 8; i++ { // 4 over REST, 2 on each connection
		var ok bool
		switch i % 4 {
		case 0, 1:
			ok = rest(fmt.Sprint(i)) == 201
		case 2:
			ok = c1.command("", protocol.CmdSend, sendArgs(conv, fmt.Sprint(i))).Error == nil
		case 3:
			ok = c2.command("", protocol.CmdSend, sendArgs(conv, fmt.Sprint(i))).Error == nil
		}
		if ok {
			accepted++
		}
	}
	if accepted != 8 {
		t.Fatalf("%d of the first 8 accepted; want all", accepted)
	}
	// 2 left of 10: then every transport refuses.
	if code := rest("9"); code != 201 {
		t.Fatalf("the 9th: %d", code)
	}
	if f := c1.command("", protocol.CmdSend, sendArgs(conv, "10")); f.Error != nil {
		t.Fatalf("the 10th: %+v", f.Error)
	}
	if code := rest("11"); code != nethttp.StatusTooManyRequests {
		t.Errorf("REST past the budget: %d, want 429", code)
	}
	for _, c := range []*client{c1, c2} {
		wantError(t, c.command("", protocol.CmdSend, sendArgs(conv, "12")), tidings.ERateLimited)
		wantError(t, c.command("", protocol.CmdMarkRead, protocol.MarkArgs{ConversationID: conv, Seq: 1}), tidings.ERateLimited)
	}
	// Receiving costs nothing, as on a socket: polls still answer.
	for i := 0; i < 15; i++ {
		ups, _, err := s.pollE(tok, "device=poller&after=0&wait=0")
		if err != nil {
			t.Fatalf("poll %d past the budget: %v", i, err)
		}
		if len(ups) == 0 {
			t.Fatalf("poll %d brought no update; want the conversation's", i)
		}
	}
	// Bob is not held back, on either transport.
	b := dial(t, s)
	b.auth("", s.token("a", "bob"), protocol.AuthArgs{})
	if f := b.command("", protocol.CmdSend, sendArgs(conv, "bob")); f.Error != nil {
		t.Fatalf("bob: %+v", f.Error)
	}
}
