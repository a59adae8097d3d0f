package ws_test

import (
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"testing"

	"github.com/tidings/tidings/protocol"
	"github.com/tidings/tidings/realtime"
	"github.com/tidings/tidings/ws"
)

// BenchmarkSocketSends sends messages of 64 bytes over one connection,
// keeping up to window sends in flight (waiting for answers only when
// window are unanswered), through the whole server: store, commit
// included. window=1 is a client that waits for each answer.
func BenchmarkSocketSends(b *testing.B) {
	for _, window := range []int{1, 20} {
		b.Run(fmt.Sprint("window=", window), func(b *testing.B) {
			s := startStack(b, func(n *realtime.Node, _ *ws.Handler) { n.CommandRate, n.CommandBurst = 1e9, 1e9 })
			s.mkUsers("a", "alice", "bob")
			conv := s.conv("a", "alice", "bob")
			alice := dial(b, s)
			alice.auth("", s.token("a", "alice"), protocol.AuthArgs{})
			done := make(chan struct{})
			defer close(done)
			go func() { // the sender's echoes
				for {
					select {
					case <-alice.updates:
					case <-done:
						return
					}
				}
			}()
			data, _ := json.Marshal(protocol.SendArgs{ConversationID: conv,
				Parts: json.RawMessage(`[{"type":"text/plain","data":"` + strings.Repeat("x", 64) + `"}]`)})
			sem := make(chan struct{}, window)
			var wg sync.WaitGroup
			b.ResetTimer()
			for i := range b.N {
				sem <- struct{}{}
				id := fmt.Sprint("s", i)
				ch := make(chan protocol.Frame, 1)
				alice.mu.Lock()
				alice.answers[id] = ch
				alice.mu.Unlock()
				alice.write(protocol.Frame{Type: protocol.TypeCommand, ID: id, Command: protocol.CmdSend, Data: data})
				wg.Add(1)
				go func() {
					defer wg.Done()
					if f := <-ch; f.Error != nil {
						b.Error(f.Error)
					}
					<-sem
				}()
			}
			wg.Wait()
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "sends/s")
		})
	}
}
