package http_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"runtime"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/tidings/tidings"
	"github.com/tidings/tidings/internal/cputime"
	"github.com/tidings/tidings/sqlite"
	"github.com/tidings/tidings/token"
)

// benchHTTPSend measures durable sends through the whole API: a real
// server on 127.0.0.1 over the real store (synchronous=FULL, as served by
// default), and parallelism × GOMAXPROCS clients on keep-alive
// connections, each POSTing 64-byte text messages to one of 10
// conversations of 2 participants. A send is answered 201 only once its
// transaction has committed. The clients run in the same process and on
// the same cores as the server, so the CPU per message includes theirs.
// jobs/batch is the mean number of write jobs group commit put in one
// transaction.
func benchHTTPSend(b *testing.B, parallelism int) {
	s, db := startStack(b, stackOptions{})
	apps := s.Apps.(*sqlite.AppService)

	ctx := context.Background()
	app, err := apps.CreateApp(ctx, "bench", "")
	if err != nil {
		b.Fatal(err)
	}
	server := tidings.NewContextWithCaller(ctx, tidings.Caller{AppID: app.ID, Server: true})
	for _, id := range []string{"alice", "bob"} {
		if _, err := s.Users.CreateUser(server, &tidings.User{ID: id}); err != nil {
			b.Fatal(err)
		}
	}
	alice := tidings.NewContextWithCaller(ctx, tidings.Caller{AppID: app.ID, UserID: "alice"})
	var urls []string
	for range 10 {
		c, err := s.Conversations.CreateConversation(alice, tidings.NewConversation{
			Participants: []tidings.NewParticipant{{UserID: "bob"}}})
		if err != nil {
			b.Fatal(err)
		}
		urls = append(urls, s.URL()+"/v1/conversations/"+c.ID+"/messages")
	}
	tok, _, err := token.Mint(app, "alice", time.Hour, time.Now())
	if err != nil {
		b.Fatal(err)
	}
	auth := "Bearer " + tok
	body := []byte(`{"parts":[{"type":"text/plain","data":"64 bytes of message text, which is about one line of a chat....."}]}`)

	clients := parallelism * runtime.GOMAXPROCS(0) // as many as RunParallel starts
	transport := &http.Transport{MaxIdleConns: 2 * clients, MaxIdleConnsPerHost: 2 * clients, IdleConnTimeout: time.Minute}
	b.Cleanup(transport.CloseIdleConnections)
	client := &http.Client{Transport: transport, Timeout: time.Minute}

	var n atomic.Int64
	b.SetParallelism(parallelism)
	b.ReportAllocs()
	batches0, jobs0 := benchBatches(b, db)
	cpu0 := cputime.Self()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			i := n.Add(1)
			req, err := http.NewRequest("POST", urls[i%10], bytes.NewReader(body))
			if err != nil {
				b.Error(err)
				return
			}
			req.Header.Set("Authorization", auth)
			req.Header.Set("Content-Type", "application/json")
			resp, err := client.Do(req)
			if err != nil {
				b.Error(err)
				return
			}
			_, err = io.Copy(io.Discard, resp.Body) // read to the end to reuse the connection
			resp.Body.Close()
			if err != nil || resp.StatusCode != http.StatusCreated {
				b.Errorf("send: status %d, %v", resp.StatusCode, err)
				return
			}
		}
	})
	b.StopTimer()
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "msgs/s")
	b.ReportMetric(float64((cputime.Self()-cpu0).Microseconds())/float64(b.N), "cpu-µs/msg")
	batches, jobs := benchBatches(b, db)
	b.ReportMetric((jobs-jobs0)/float64(batches-batches0), "jobs/batch")
}

// benchBatches returns the number of write transactions the store has
// committed and the number of jobs they held (from its metrics), to tell
// how many sends group commit put in one transaction.
func benchBatches(b *testing.B, db *sqlite.DB) (batches uint64, jobs float64) {
	reg := prometheus.NewRegistry()
	reg.MustRegister(db.Collectors()...)
	families, err := reg.Gather()
	if err != nil {
		b.Fatal(err)
	}
	for _, f := range families {
		if f.GetName() == "tidings_store_write_batch_jobs" && len(f.GetMetric()) == 1 {
			h := f.GetMetric()[0].GetHistogram()
			return h.GetSampleCount(), h.GetSampleSum()
		}
	}
	b.Fatal("the store has no tidings_store_write_batch_jobs histogram")
	return 0, 0
}

// BenchmarkHTTPSendMessage is BenchmarkSendMessage of package sqlite
// through HTTP: compare the two to see what the API costs.
func BenchmarkHTTPSendMessage(b *testing.B) {
	for _, senders := range []int{1, 8, 64} {
		b.Run(fmt.Sprintf("senders=%dxP", senders), func(b *testing.B) { benchHTTPSend(b, senders) })
	}
}
