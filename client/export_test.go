package client

import "github.com/tidings/tidings/protocol"

// SpeaksV2 says whether the client's connection speaks tidings.v2.
func SpeaksV2(c *Client) bool {
	cn, err := c.current()
	return err == nil && cn.v2
}

var _ = protocol.SubprotocolV2
