package push

import (
	"context"
	"log/slog"
	"slices"
	"time"

	"github.com/tidings/tidings"
)

// ClusterPresence is the Presence of a node of a cluster: a user is
// online when they have a live connection on any node, as the cluster's
// PresenceStore counts WebSocket sessions, or a session on this node
// (Local: the node's own, which counts its polls too; polls waiting on
// other nodes are not seen).
type ClusterPresence struct {
	Local Presence // may be nil
	Store tidings.PresenceStore
	// Timeout bounds one question to Store (default 5 s).
	Timeout time.Duration
	Logger  *slog.Logger
}

// Online reports whether the user is online anywhere in the cluster.
// When the PresenceStore cannot tell, the user counts as offline.
func (p *ClusterPresence) Online(appID, userID string) bool {
	if p.Local != nil && p.Local.Online(appID, userID) {
		return true
	}
	ctx, cancel := context.WithTimeout(context.Background(), p.timeout())
	defer cancel()
	online, err := p.Store.Online(ctx, appID, []string{userID})
	if err != nil {
		p.logger().Warn("push: ask whether a user is online; taken as offline", "err", err, "app", appID, "user", userID)
		return false
	}
	return len(online) > 0
}

// OnlineOf returns those of userIDs who are online anywhere in the
// cluster.
func (p *ClusterPresence) OnlineOf(ctx context.Context, appID string, userIDs []string) ([]string, error) {
	ctx, cancel := context.WithTimeout(ctx, p.timeout())
	defer cancel()
	var local, ask []string
	for _, u := range userIDs {
		if p.Local != nil && p.Local.Online(appID, u) {
			local = append(local, u)
		} else {
			ask = append(ask, u)
		}
	}
	if len(ask) == 0 {
		return local, nil
	}
	online, err := p.Store.Online(ctx, appID, ask)
	if err != nil {
		return local, err
	}
	return slices.Concat(local, online), nil
}

func (p *ClusterPresence) timeout() time.Duration {
	if p.Timeout <= 0 {
		return 5 * time.Second
	}
	return p.Timeout
}

func (p *ClusterPresence) logger() *slog.Logger {
	if p.Logger == nil {
		return slog.Default()
	}
	return p.Logger
}
