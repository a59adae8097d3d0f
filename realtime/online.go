package realtime

// Online reports whether the user has a session on this node: a WebSocket
// connection, or a poll waiting. Push delivery (package push) sends no
// push to a user who is online; it asks again when the push is due.
func (n *Node) Online(appID, userID string) bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	return len(n.users[userKey{appID, userID}]) > 0
}
