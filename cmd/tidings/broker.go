package main

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"log/slog"
	"os"
	"regexp"
	"strings"
	"time"

	"github.com/tidings/tidings"
	"github.com/tidings/tidings/nats"
)

// clusterLink is what joins a node to the others of a cluster, on the
// broker named by --broker.
type clusterLink struct {
	Broker   tidings.Broker
	Presence tidings.PresenceStore
	Leases   tidings.Leases
	close    func() error
}

// Close disconnects from the broker.
func (l *clusterLink) Close() error {
	if l.close == nil {
		return nil
	}
	return l.close()
}

// defaultBrokerPrefix names the subjects and buckets of a cluster on NATS
// unless --broker-prefix says otherwise.
const defaultBrokerPrefix = "default"

// brokerPrefixPattern is what package nats accepts as a prefix.
var brokerPrefixPattern = regexp.MustCompile(`^[A-Za-z0-9_-]{1,32}$`)

// natsBuilt says whether openBroker can connect.
const natsBuilt = true

// openBroker connects to the NATS servers urls as the node nodeID, with
// the cluster's subjects and buckets named after prefix, and the node's
// sessions leased for presenceLease. The connection reconnects by itself
// once made.
func openBroker(urls []string, prefix, nodeID string, presenceLease time.Duration, log *slog.Logger) (*clusterLink, error) {
	c, err := nats.Connect(strings.Join(urls, ","), nats.Options{Name: nodeID, Prefix: prefix, PresenceLease: presenceLease, Logger: log})
	if err != nil {
		return nil, err
	}
	return &clusterLink{Broker: c, Presence: c.Presence(), Leases: c.Leases(), close: c.Close}, nil
}

// newNodeID returns a name for this node, unique in the cluster: the
// host's name and random digits, new at every start, so that a restarted
// node is not taken for the one it replaces (whose sessions end with
// their lease).
func newNodeID() string {
	host, err := os.Hostname()
	if err != nil || host == "" {
		host = "node"
	}
	b := make([]byte, 4)
	rand.Read(b)
	return fmt.Sprintf("%s-%s", host, hex.EncodeToString(b))
}
