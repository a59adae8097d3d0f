package nats

import (
	"fmt"
	"net"
	"regexp"
	"sync"
	"testing"
	"time"

	"github.com/tidings/tidings"
)

// Ids become tokens valid in subjects and keys, distinct for distinct
// ids, and readable when they can be.
func TestToken(t *testing.T) {
	valid := regexp.MustCompile(`^[A-Za-z0-9_=-]+$`)
	ids := []string{"shop", "a.b", "a_b", "a-b", "alice@example.com", "u:1", "=x", "", "é", "a b", "a.b.c", "YS5i"}
	seen := map[string]string{}
	for _, id := range ids {
		tok := token(id)
		if !valid.MatchString(tok) {
			t.Errorf("token(%q) = %q: not a valid token", id, tok)
		}
		if other, ok := seen[tok]; ok {
			t.Errorf("token(%q) = token(%q) = %q", id, other, tok)
		}
		seen[tok] = id
	}
	if token("shop_1-a") != "shop_1-a" {
		t.Errorf("a plain id is not kept as it is: %q", token("shop_1-a"))
	}
}

func TestConnectOptions(t *testing.T) {
	for _, p := range []string{"a.b", "a b", "x>", "0123456789012345678901234567890123"} {
		if _, err := Connect(sharedURL, Options{Prefix: p}); tidings.ErrorCode(err) != tidings.EInvalid {
			t.Errorf("prefix %q: %v, want invalid_argument", p, err)
		}
	}
	if _, err := Connect(" , ", Options{}); tidings.ErrorCode(err) != tidings.EInvalid {
		t.Errorf("no URL: %v, want invalid_argument", err)
	}
	// No server answers: Connect fails, unavailable, rather than wait.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	if _, err := Connect("nats://"+addr, Options{}); tidings.ErrorCode(err) != tidings.EUnavailable {
		t.Errorf("no server: %v, want unavailable", err)
	}
}

// Nodes that need a bucket at the same moment all get it: the one whose
// create loses the race uses the bucket the other made, whatever error
// JetStream gave it (a bucket that exists, or its stream's subjects
// overlapping with the stream just made).
func TestBucketMadeByNodesAtOnce(t *testing.T) {
	conns := sharedConns(t, 4)
	ctx := testContext(t)
	for round := range 10 {
		name := fmt.Sprintf("%sat_once_%d", conns[0].bucketPrefix(), round)
		var wg sync.WaitGroup
		for i := range 12 {
			c := conns[i%len(conns)]
			wg.Go(func() {
				if _, err := c.bucket(ctx, name, 10*time.Second, true); err != nil {
					t.Errorf("round %d, node %d: %v", round, i, err)
				}
			})
		}
		wg.Wait()
	}
}
