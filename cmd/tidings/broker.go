package main

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"os"

	"github.com/tidings/tidings"
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

// natsBuilt says whether openBroker can connect.
const natsBuilt = false

// errNoNATS is returned by openBroker until package nats implements the
// broker (issue #11).
var errNoNATS = errors.New("this build of tidings cannot use a NATS broker yet (issue #11): leave --broker empty to run one node")

// openBroker connects to the NATS servers urls as the node nodeID.
func openBroker(urls []string, nodeID string, log *slog.Logger) (*clusterLink, error) {
	return nil, errNoNATS
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
