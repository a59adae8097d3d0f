package loadgen

import (
	"context"
	"fmt"
	"net"
	"sync/atomic"
	"time"
)

// dialer opens TCP connections to the server. Against a loopback address
// it spreads them over several loopback source addresses (127.0.0.1,
// 127.0.0.2…), each with its own range of ephemeral ports, so that the
// number of connections is not bounded by one address's ~28,000 ports.
type dialer struct {
	sources []net.IP
	next    atomic.Uint32
	d       net.Dialer
}

func newDialer(sources int) *dialer {
	d := &dialer{d: net.Dialer{Timeout: 10 * time.Second, KeepAlive: -1}}
	for i := range max(sources, 1) {
		d.sources = append(d.sources, net.IPv4(127, 0, byte(i/250), byte(1+i%250)))
	}
	return d
}

// DialContext dials addr (host:port), from the next source address when
// the host is a loopback address.
func (d *dialer) DialContext(ctx context.Context, network, addr string) (net.Conn, error) {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, err
	}
	ip := net.ParseIP(host)
	if ip == nil || ip.To4() == nil || !ip.IsLoopback() || len(d.sources) == 1 {
		return d.d.DialContext(ctx, network, addr)
	}
	nd := d.d
	nd.LocalAddr = &net.TCPAddr{IP: d.sources[int(d.next.Add(1))%len(d.sources)]}
	c, err := nd.DialContext(ctx, network, addr)
	if err != nil {
		return nil, fmt.Errorf("dial %s from %s: %w", addr, nd.LocalAddr, err)
	}
	return c, nil
}

// checkLoopback refuses a server that is not on this machine unless
// allowed: a load generator must not be pointed at someone else's server
// by mistake.
func checkLoopback(host string, allowRemote bool) error {
	if allowRemote {
		return nil
	}
	if host == "localhost" {
		return nil
	}
	if ip := net.ParseIP(host); ip != nil && ip.IsLoopback() {
		return nil
	}
	return fmt.Errorf("the server %q is not a loopback address: give --allow-remote to load a server on another machine (yours, with its owner's consent)", host)
}
