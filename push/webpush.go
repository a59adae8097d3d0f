package push

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"syscall"
	"time"

	"github.com/SherClockHolmes/webpush-go"

	"github.com/tidings/tidings"
)

// WebPush sends to browsers' Web Push subscriptions, through
// github.com/SherClockHolmes/webpush-go: the payload is encrypted for the
// subscription (RFC 8291, aes128gcm) and the request signed with the
// app's VAPID key (RFC 8292). The push service is the subscription's
// endpoint, chosen by the browser.
//
// The endpoint is an https URL the user's browser gave, so by default
// requests go only to public addresses: an endpoint on a loopback,
// private or link-local address (a service inside the server's network)
// is refused.
type WebPush struct {
	// Client sends the requests (default: a client with a 30 s timeout
	// that connects to public addresses only).
	Client *http.Client
	// TTL is how long the push service keeps a push for a device that is
	// offline (default 24 h).
	TTL time.Duration
}

var defaultClient = &http.Client{Timeout: 30 * time.Second}

// publicClient connects to public addresses only, directly (a proxy,
// often on a private address, would be refused).
var publicClient = &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{
	DialContext:       (&net.Dialer{Timeout: 10 * time.Second, Control: publicOnly}).DialContext,
	ForceAttemptHTTP2: true, TLSHandshakeTimeout: 10 * time.Second, IdleConnTimeout: 90 * time.Second, MaxIdleConnsPerHost: 16,
}}

// publicOnly refuses connections to addresses that are not public.
func publicOnly(network, address string, _ syscall.RawConn) error {
	host, _, err := net.SplitHostPort(address)
	if err != nil {
		return err
	}
	ip, err := netip.ParseAddr(host)
	if err != nil {
		return err
	}
	ip = ip.Unmap()
	if !ip.IsGlobalUnicast() || ip.IsPrivate() || ip.IsLoopback() || ip.IsLinkLocalUnicast() {
		return fmt.Errorf("push: %s is not a public address", ip)
	}
	return nil
}

func (w *WebPush) Send(ctx context.Context, cfg *tidings.PushConfig, t *tidings.PushTarget, n *Notification) error {
	if t.Keys == nil {
		return fmt.Errorf("push: web push target %s has no keys", t.ID)
	}
	client := w.Client
	if client == nil {
		client = publicClient
	}
	ttl := w.TTL
	if ttl <= 0 {
		ttl = 24 * time.Hour
	}
	sub := &webpush.Subscription{Endpoint: t.Endpoint, Keys: webpush.Keys{Auth: t.Keys.Auth, P256dh: t.Keys.P256dh}}
	resp, err := webpush.SendNotificationWithContext(ctx, n.webJSON(), sub, &webpush.Options{
		HTTPClient: client,
		// The library adds "mailto:" to a subject that is not an https: URL.
		Subscriber:      strings.TrimPrefix(cfg.VAPIDSubject, "mailto:"),
		TTL:             int(ttl / time.Second),
		Urgency:         webpush.UrgencyHigh,
		VAPIDPublicKey:  cfg.VAPIDPublicKey,
		VAPIDPrivateKey: cfg.VAPIDPrivateKey,
	})
	if err != nil {
		return fmt.Errorf("push: web push to %s: %w", t.ID, err)
	}
	defer drain(resp)
	switch {
	case resp.StatusCode == http.StatusNotFound || resp.StatusCode == http.StatusGone:
		return fmt.Errorf("%w: web push service answered %s", ErrGone, resp.Status)
	case resp.StatusCode >= 300:
		return statusError("web push service", resp)
	}
	return nil
}
