package sqlite_test

import (
	"context"
	"math/rand/v2"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/tidings/tidings"
	"github.com/tidings/tidings/sqlite"
)

// HasPushTargets follows every change of targets that commits, and no
// change that does not; it is read again from the file on Open.
func TestHasPushTargets(t *testing.T) {
	e := newEnv(t)
	e.mkUsers(t, "a", "alice", "bob")
	e.mkUsers(t, "b", "carol")
	ps := sqlite.NewPushService(e.db)
	has := func(want map[string]bool) {
		t.Helper()
		for app, w := range want {
			if got := ps.HasPushTargets(app); got != w {
				t.Fatalf("HasPushTargets(%q) = %v, want %v", app, got, w)
			}
		}
	}
	has(map[string]bool{"a": false, "b": false})
	alice, err := ps.RegisterPushTarget(user("a", "alice"), tidings.NewPushTarget{Kind: tidings.PushAPNs, Token: "alice-phone"})
	if err != nil {
		t.Fatal(err)
	}
	has(map[string]bool{"a": true, "b": false})
	if _, err := ps.RegisterPushTarget(user("a", "bob"), tidings.NewPushTarget{Kind: tidings.PushFCM, Token: "bob-phone"}); err != nil {
		t.Fatal(err)
	}
	if err := ps.DeletePushTarget(user("a", "alice"), alice.ID); err != nil {
		t.Fatal(err)
	}
	has(map[string]bool{"a": true, "b": false}) // bob's is left

	// A write that adds a target and then fails, rolled back, changes
	// nothing.
	if err := sqlite.InsertPushTargetThenFail(e.db, "b", "carol"); err == nil {
		t.Fatal("the failing write did not fail")
	}
	has(map[string]bool{"a": true, "b": false})

	// Read again on Open.
	path := e.path
	if err := e.db.Close(); err != nil {
		t.Fatal(err)
	}
	e = openDB(t, path)
	ps = sqlite.NewPushService(e.db)
	has(map[string]bool{"a": true, "b": false})

	// Deleting the user deletes their targets.
	if err := e.users.DeleteUser(server("a"), "bob", tidings.AnonymizeMessages); err != nil {
		t.Fatal(err)
	}
	has(map[string]bool{"a": false, "b": false})
	if _, err := ps.RegisterPushTarget(user("b", "carol"), tidings.NewPushTarget{Kind: tidings.PushFCM, Token: "carol-phone"}); err != nil {
		t.Fatal(err)
	}
	ids := []string{}
	list, err := ps.ListPushTargets(user("b", "carol"))
	if err != nil {
		t.Fatal(err)
	}
	for _, pt := range list {
		ids = append(ids, pt.ID)
	}
	has(map[string]bool{"a": false, "b": true})
	if err := ps.RemovePushTargets(context.Background(), "b", ids); err != nil {
		t.Fatal(err)
	}
	has(map[string]bool{"a": false, "b": false})
}

// The unread counts of a push count the sends whose marks are not written
// yet, without having them written (which would cost a write of every
// waiting mark per push): with marks never due, written by plans a
// conversation per commit, and written all at once by a read that asks
// for them, in any order.
func TestPushRecipientCountsMarksNotWrittenYet(t *testing.T) {
	for _, tc := range []struct {
		name string
		due  time.Duration
	}{{"never due", time.Hour}, {"due at once", 0}} {
		t.Run(tc.name, func(t *testing.T) {
			e := openDBWith(t, filepath.Join(t.TempDir(), "tidings.db"), func(db *sqlite.DB) {
				sqlite.SetMarkFlush(db, tc.due, time.Hour, 1)
			})
			if _, err := e.apps.CreateApp(context.Background(), "a", ""); err != nil {
				t.Fatal(err)
			}
			e.mkUsers(t, "a", "alice", "bob")
			convs := []string{"c0", "c1", "c2", "c3"}
			for _, id := range convs {
				e.mkConv(t, "a", "alice", tidings.NewConversation{ID: id, Participants: []tidings.NewParticipant{{UserID: "bob"}}})
			}
			ps := sqlite.NewPushService(e.db)
			last := map[string]int64{}
			read := map[string]map[string]int64{"alice": {}, "bob": {}}
			rng := rand.New(rand.NewPCG(1, 2))
			for i := range 120 {
				if i%7 == 6 {
					// A send to each conversation, in one commit: plans
					// then write them over the next commits.
					release := sqlite.HoldWriter(e.db)
					var wg sync.WaitGroup
					for _, conv := range convs {
						from := []string{"alice", "bob"}[rng.IntN(2)]
						last[conv]++
						read[from][conv] = last[conv]
						wg.Go(func() { e.sendEach(t, "a", conv, from) })
					}
					for sqlite.QueuedJobs(e.db) < len(convs) {
						time.Sleep(time.Millisecond)
					}
					release()
					wg.Wait()
				} else {
					from, conv := []string{"alice", "bob"}[rng.IntN(2)], convs[rng.IntN(len(convs))]
					e.sendEach(t, "a", conv, from)
					last[conv]++
					read[from][conv] = last[conv]
				}
				if i%29 == 28 { // a read that has every mark written
					if _, err := e.convs.FindConversationByID(user("a", "bob"), "c0"); err != nil {
						t.Fatal(err)
					}
				}
				commits, pending := sqlite.Commits(e.db), sqlite.MarksPending(e.db)
				for _, u := range []string{"alice", "bob"} {
					for _, c := range convs {
						var badge int64
						for _, c := range convs {
							badge += last[c] - read[u][c]
						}
						r := must[*tidings.PushRecipient](t)(ps.PushRecipient(context.Background(), "a", u, c))
						if r.Unread != last[c]-read[u][c] || r.Badge != badge {
							t.Fatalf("after send %d: %s in %s: %d unread, badge %d; want %d and %d", i+1, u, c, r.Unread, r.Badge, last[c]-read[u][c], badge)
						}
					}
				}
				if sqlite.Commits(e.db) != commits || pending && !sqlite.MarksPending(e.db) {
					t.Fatalf("after send %d: counting for pushes wrote the marks", i+1)
				}
			}
		})
	}
}
