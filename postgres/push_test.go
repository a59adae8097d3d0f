package postgres

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tidings/tidings"
)

// openNodes opens n DBs (each a pool of its own, as n nodes have) on one
// fresh database, with the connection parameters params ("" for none).
func openNodes(t *testing.T, n int, params string) []*DB {
	t.Helper()
	dsn := freshDSN(t)
	if params != "" {
		sep := "?"
		if strings.Contains(dsn, "?") {
			sep = "&"
		}
		dsn += sep + params
	}
	var dbs []*DB
	for range n {
		db := NewDB(dsn)
		db.Logger = discard()
		if err := db.Open(); err != nil {
			t.Fatalf("open: %v", err)
		}
		t.Cleanup(func() { db.Close() })
		dbs = append(dbs, db)
	}
	return dbs
}

// TestVAPIDKeyOnceAcrossNodes: nodes asking at once for an app's VAPID
// key pair, which none has made yet, all get the same one, and it is the
// one stored.
func TestVAPIDKeyOnceAcrossNodes(t *testing.T) {
	nodes := openNodes(t, 3, "")
	ctx := context.Background()
	const apps, perNode = 4, 4
	for i := range apps {
		if _, err := NewAppService(nodes[0]).CreateApp(ctx, fmt.Sprintf("app%d", i), ""); err != nil {
			t.Fatal(err)
		}
	}
	for i := range apps {
		appID := fmt.Sprintf("app%d", i)
		start := make(chan struct{})
		var wg sync.WaitGroup
		var mu sync.Mutex
		got := map[string]int{}
		var errs []error
		for _, db := range nodes {
			push := NewPushService(db)
			for j := range perNode {
				wg.Add(1)
				go func() {
					defer wg.Done()
					<-start
					var key string
					var err error
					if j%2 == 0 {
						var cfg *tidings.PushConfig
						if cfg, err = push.AppPushConfig(ctx, appID); err == nil {
							key = cfg.VAPIDPublicKey + " " + cfg.VAPIDPrivateKey
						}
					} else {
						var c *tidings.PushConfig
						if c, err = push.PushConfig(tidings.NewContextWithCaller(ctx, tidings.Caller{AppID: appID, Server: true})); err == nil {
							key = c.VAPIDPublicKey + " " + c.VAPIDPrivateKey
						}
					}
					mu.Lock()
					defer mu.Unlock()
					if err != nil {
						errs = append(errs, err)
						return
					}
					got[key]++
				}()
			}
		}
		close(start)
		wg.Wait()
		if len(errs) > 0 {
			t.Fatalf("%s: %v", appID, errs)
		}
		if len(got) != 1 {
			t.Fatalf("%s: %d key pairs handed out: %v", appID, len(got), got)
		}
		var stored string
		var rows int
		if err := nodes[1].queryRow(ctx, `SELECT min(vapid_public || ' ' || vapid_private), count(*) FROM push_apps WHERE app_id = $1`,
			appID).Scan(&stored, &rows); err != nil {
			t.Fatal(err)
		}
		if rows != 1 || got[stored] != len(nodes)*perNode {
			t.Fatalf("%s: %d rows, stored %q, handed out %v", appID, rows, stored, got)
		}
	}
}

// TestVAPIDKeyRace: a node that makes the app's key pair while another
// node's transaction has made one and not yet committed waits for it,
// and then reads that one rather than storing its own.
func TestVAPIDKeyRace(t *testing.T) {
	// The first node's transaction is held open on purpose: not ended by
	// the server's idle timeout, however slow the machine.
	nodes := openNodes(t, 2, "idle_in_transaction_session_timeout=120s")
	ctx := context.Background()
	if _, err := NewAppService(nodes[0]).CreateApp(ctx, "a", ""); err != nil {
		t.Fatal(err)
	}
	made, release := make(chan *tidings.PushConfig, 1), make(chan struct{})
	firstDone := make(chan error, 1)
	go func() {
		firstDone <- nodes[0].update(ctx, func(tx *Tx) error {
			cfg, err := tx.pushConfig("a", false)
			if err != nil {
				return err
			}
			select {
			case made <- cfg:
			default: // a second run: the test has it already
			}
			<-release
			return nil
		})
	}()
	var first *tidings.PushConfig
	select {
	case first = <-made:
	case err := <-firstDone:
		t.Fatalf("the first node's transaction: %v", err)
	case <-time.After(30 * time.Second):
		t.Fatal("the first node made no key pair in 30 s")
	}

	type result struct {
		cfg *tidings.PushConfig
		err error
	}
	second := make(chan result, 1)
	go func() {
		cfg, err := NewPushService(nodes[1]).AppPushConfig(ctx, "a")
		second <- result{cfg, err}
	}()
	// The second node's insert waits on the first's uncommitted row.
	deadline := time.Now().Add(30 * time.Second)
	for {
		var waiting int
		if err := nodes[0].queryRow(ctx, `SELECT count(*) FROM pg_stat_activity
			WHERE datname = current_database() AND wait_event_type = 'Lock' AND query LIKE 'INSERT INTO push_apps%'`).Scan(&waiting); err != nil {
			t.Fatal(err)
		}
		if waiting > 0 {
			break
		}
		select {
		case r := <-second:
			t.Fatalf("the second node did not wait for the first's key pair: %+v, %v", r.cfg, r.err)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatal("the second node's insert is not waiting after 30 s")
		}
		time.Sleep(10 * time.Millisecond)
	}
	close(release)
	if err := <-firstDone; err != nil {
		t.Fatalf("the first node's transaction: %v", err)
	}
	var r result
	select {
	case r = <-second:
	case <-time.After(30 * time.Second):
		t.Fatal("the second node has no answer 30 s after the first committed")
	}
	if r.err != nil {
		t.Fatal(r.err)
	}
	if r.cfg.VAPIDPublicKey != first.VAPIDPublicKey || r.cfg.VAPIDPrivateKey != first.VAPIDPrivateKey {
		t.Fatalf("the second node got %s, the first made %s", r.cfg.VAPIDPublicKey, first.VAPIDPublicKey)
	}
	again, err := NewPushService(nodes[1]).AppPushConfig(ctx, "a")
	if err != nil || again.VAPIDPrivateKey != first.VAPIDPrivateKey {
		t.Fatalf("stored %+v, %v; want the first node's", again, err)
	}
}

// TestPushTargetCapAcrossNodes: a user's devices registering at once on
// several nodes leave them with MaxPushTargets targets, the newest.
func TestPushTargetCapAcrossNodes(t *testing.T) {
	nodes := openNodes(t, 2, "")
	ctx := context.Background()
	if _, err := NewAppService(nodes[0]).CreateApp(ctx, "a", ""); err != nil {
		t.Fatal(err)
	}
	srv := tidings.NewContextWithCaller(ctx, tidings.Caller{AppID: "a", Server: true})
	if _, err := NewUserService(nodes[0]).CreateUser(srv, &tidings.User{ID: "bob", DisplayName: "Bob"}); err != nil {
		t.Fatal(err)
	}
	bob := tidings.NewContextWithCaller(ctx, tidings.Caller{AppID: "a", UserID: "bob"})
	for i := range tidings.MaxPushTargets - 1 {
		if _, err := NewPushService(nodes[0]).RegisterPushTarget(bob, tidings.NewPushTarget{Kind: tidings.PushFCM, Token: fmt.Sprintf("old%02d", i)}); err != nil {
			t.Fatal(err)
		}
	}
	const perNode = 4
	start := make(chan struct{})
	var wg sync.WaitGroup
	errs := make(chan error, len(nodes)*perNode)
	for n, db := range nodes {
		for j := range perNode {
			wg.Add(1)
			go func() {
				defer wg.Done()
				<-start
				_, err := NewPushService(db).RegisterPushTarget(bob, tidings.NewPushTarget{Kind: tidings.PushAPNs, Token: fmt.Sprintf("new%d-%d", n, j)})
				errs <- err
			}()
		}
	}
	close(start)
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	list, err := NewPushService(nodes[1]).ListPushTargets(bob)
	if err != nil {
		t.Fatal(err)
	}
	if len(list) != tidings.MaxPushTargets {
		t.Fatalf("%d targets, want %d", len(list), tidings.MaxPushTargets)
	}
	news := 0
	for _, tg := range list {
		if strings.HasPrefix(tg.Token, "new") {
			news++
		}
	}
	if news != len(nodes)*perNode {
		t.Fatalf("%d of the %d new targets kept: %+v", news, len(nodes)*perNode, list)
	}
}
