package realtime

// WaitSends waits until no message.send of c is in flight.
func (c *Client) WaitSends() {
	for range cap(c.sends) {
		c.sends <- struct{}{}
	}
	for range cap(c.sends) {
		<-c.sends
	}
}
