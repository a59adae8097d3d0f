package client_test

import (
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/tidings/tidings"
	"github.com/tidings/tidings/client"
)

// ListParticipants follows the pages of the API: a channel larger than the
// largest page comes back whole.
func TestListParticipantsFollowsPages(t *testing.T) {
	t.Parallel()
	s := startServer(t)
	ids := make([]string, tidings.MaxParticipantPage)
	for i := range ids {
		ids[i] = fmt.Sprintf("user%04d", i)
	}
	s.mkUsers(t, "owner")
	var wg sync.WaitGroup
	for w := range 16 { // concurrently, so that the store commits them in batches
		wg.Go(func() {
			for i := w; i < len(ids); i += 16 {
				s.mkUsers(panicker{}, ids[i])
			}
		})
	}
	wg.Wait()
	conv := s.conv(t, "owner", ids...)

	c := newClient(t, s.URL(), client.WithMode(client.ManualMode), client.WithToken(s.token(t, "owner", time.Hour)))
	ps, err := c.ListParticipants(ctxT(t), conv)
	if err != nil {
		t.Fatal(err)
	}
	if len(ps) != len(ids)+1 {
		t.Fatalf("ListParticipants returned %d participants; want %d", len(ps), len(ids)+1)
	}
	seen := map[string]bool{}
	for _, p := range ps {
		if seen[p.UserID] {
			t.Fatalf("%s listed twice", p.UserID)
		}
		seen[p.UserID] = true
	}
}
