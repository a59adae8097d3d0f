package client_test

import (
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"testing"
	"time"

	"github.com/tidings/tidings/client"
)

// TestTLS goes through an HTTPS reverse proxy: the REST API over https,
// the realtime connection over wss, both with the HTTP client's TLS
// settings.
func TestTLS(t *testing.T) {
	t.Parallel()
	s := startServer(t)
	s.mkUsers(t, "alice", "bob")
	conv := s.conv(t, "bob", "alice")
	target, _ := url.Parse(s.URL())
	ts := httptest.NewTLSServer(httputil.NewSingleHostReverseProxy(target))
	t.Cleanup(ts.Close)

	rec := newRecorder()
	c := newClient(t, ts.URL, client.WithToken(s.token(t, "alice", time.Hour)), client.WithHTTPClient(ts.Client()),
		client.WithEventListener(rec.listen))
	if me, err := c.Me(ctxT(t)); err != nil || me.ID != "alice" {
		t.Fatalf("Me over https: %+v, %v", me, err)
	}
	waitConnected(t, c)
	s.send(t, "bob", conv, "m000")
	checkSequence(t, rec.waitTexts(t, conv, 1), 1)
	c.Close()
}
