package sqlite_test

import (
	"context"
	"database/sql"
	"fmt"
	"path/filepath"
	"sync"
	"testing"

	"github.com/tidings/tidings"
	"github.com/tidings/tidings/internal/cputime"
	"github.com/tidings/tidings/sqlite"
)

// profileWorld is a store where "u0" takes part in a channel of members
// users, or in convs conversations of 3 (with two others each), and
// readers of each shape: "u1" (a member of the channel, or of one small
// conversation with u0).
func profileWorld(b *testing.B, members, convs int) *env {
	b.Helper()
	e := openDBWith(b, filepath.Join(b.TempDir(), "bench.db"), func(db *sqlite.DB) { db.Synchronous = "NORMAL" })
	if _, err := e.apps.CreateApp(context.Background(), "a", ""); err != nil {
		b.Fatal(err)
	}
	users := max(members, 2*convs+1, 2)
	parallel(b, users, func(i int) error {
		_, err := e.users.CreateUser(server("a"), &tidings.User{ID: fmt.Sprint("u", i)})
		return err
	})
	if members > 0 {
		c := e.mkConv(b, "a", "u0", tidings.NewConversation{ID: "channel", IsPublic: true})
		parallel(b, members-1, func(i int) error {
			_, err := e.convs.Join(user("a", fmt.Sprint("u", i+1)), c.ID)
			return err
		})
	}
	parallel(b, convs, func(i int) error {
		_, err := e.convs.CreateConversation(user("a", "u0"), tidings.NewConversation{Participants: []tidings.NewParticipant{
			{UserID: fmt.Sprint("u", 2*i+1)}, {UserID: fmt.Sprint("u", 2*i+2)}}})
		return err
	})
	return e
}

// parallel runs f(0…n-1) on 32 goroutines, so that the writes share
// commits.
func parallel(b *testing.B, n int, f func(i int) error) {
	b.Helper()
	var wg sync.WaitGroup
	next := make(chan int)
	for range 32 {
		wg.Go(func() {
			for i := range next {
				if err := f(i); err != nil {
					b.Error(err)
				}
			}
		})
	}
	for i := range n {
		next <- i
	}
	close(next)
	wg.Wait()
	if b.Failed() {
		b.FailNow()
	}
}

// BenchmarkProfileUpdate measures a profile change of a user alone, of a
// member of a 10,000-member channel, and of a user in 500 conversations
// of 3: the change and its event, plus one profile share per conversation
// of the user (synchronous=NORMAL: the transaction's work, not the disk's
// flush). "recipientRows" is the design not taken, for comparison: one
// row per receiver, written in the same kind of transaction.
func BenchmarkProfileUpdate(b *testing.B) {
	for _, w := range []struct {
		name           string
		members, convs int
	}{{"alone", 0, 0}, {"channel=10000", 10000, 0}, {"conversations=500x3", 0, 500}} {
		b.Run(w.name, func(b *testing.B) {
			e := profileWorld(b, w.members, w.convs)
			b.ReportAllocs()
			cpu0 := cputime.Self()
			i := 0
			for b.Loop() {
				i++
				name := fmt.Sprint("U0 ", i)
				if _, err := e.users.UpdateUser(user("a", "u0"), "u0", tidings.UserUpdate{DisplayName: &name}); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64((cputime.Self()-cpu0).Microseconds())/float64(b.N), "cpu-µs/op")
		})
		if w.members+w.convs == 0 {
			continue
		}
		b.Run(w.name+"/recipientRows", func(b *testing.B) {
			e := profileWorld(b, w.members, w.convs)
			raw, err := sql.Open("sqlite", "file:"+e.path+"?_pragma=busy_timeout(5000)&_pragma=synchronous(NORMAL)")
			if err != nil {
				b.Fatal(err)
			}
			defer raw.Close()
			raw.SetMaxOpenConns(1)
			if _, err := raw.Exec(`CREATE TABLE receivers (app_id TEXT, user_id TEXT, seq BIGINT, PRIMARY KEY (app_id, user_id, seq)) WITHOUT ROWID`); err != nil {
				b.Fatal(err)
			}
			var rows int64
			cpu0 := cputime.Self()
			i := int64(0)
			for b.Loop() {
				i++
				tx, err := raw.Begin()
				if err != nil {
					b.Fatal(err)
				}
				res, err := tx.Exec(`INSERT INTO receivers SELECT DISTINCT p.app_id, p.user_id, ? FROM participants mine
					JOIN participants p ON p.app_id = mine.app_id AND p.conversation_id = mine.conversation_id
					WHERE mine.app_id = 'a' AND mine.user_id = 'u0' AND p.user_id <> 'u0'`, i)
				if err != nil {
					b.Fatal(err)
				}
				n, _ := res.RowsAffected()
				rows = n
				if err := tx.Commit(); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64((cputime.Self()-cpu0).Microseconds())/float64(b.N), "cpu-µs/op")
			b.ReportMetric(float64(rows), "rows/op")
		})
	}
}

// BenchmarkReplayWithProfiles measures a replay read (UserEvents, a batch
// of 256) of a reader who shares a 10,000-member channel, or one of 500
// conversations of 3, with u0, after 100 messages and 20 profile changes
// of u0 and 20 of other members (none in "messagesOnly"): the profile
// changes of the others are found through the reader's own memberships.
func BenchmarkReplayWithProfiles(b *testing.B) {
	for _, w := range []struct {
		name           string
		members, convs int
		profiles       bool
	}{
		{"channel=10000", 10000, 0, true}, {"conversations=500x3", 0, 500, true},
		{"channel=10000/messagesOnly", 10000, 0, false}, {"conversations=500x3/messagesOnly", 0, 500, false},
	} {
		b.Run(w.name, func(b *testing.B) {
			e := profileWorld(b, w.members, w.convs)
			log := sqlite.NewEventLog(e.db)
			ctx := context.Background()
			after, err := log.LastEventSeq(ctx)
			if err != nil {
				b.Fatal(err)
			}
			conv := "channel"
			if w.members == 0 {
				ms, err := log.UserConversations(ctx, "a", "u1")
				if err != nil || len(ms) != 1 {
					b.Fatal(ms, err)
				}
				conv = ms[0].ConversationID
			}
			for i := range 100 {
				if _, _, err := e.messages.SendMessage(user("a", "u0"), conv, tidings.NewMessage{Parts: text(fmt.Sprint("m", i))}); err != nil {
					b.Fatal(err)
				}
				if w.profiles && i%5 == 0 {
					for _, u := range []string{"u0", fmt.Sprint("u", 3+i)} {
						name := fmt.Sprint(u, " ", i)
						if _, err := e.users.UpdateUser(user("a", u), u, tidings.UserUpdate{DisplayName: &name}); err != nil {
							b.Fatal(err)
						}
					}
				}
			}
			var got int
			b.ReportAllocs()
			cpu0 := cputime.Self()
			for b.Loop() {
				evs, err := log.UserEvents(ctx, "a", "u1", after, 256)
				if err != nil {
					b.Fatal(err)
				}
				got = len(evs)
			}
			b.ReportMetric(float64((cputime.Self()-cpu0).Microseconds())/float64(b.N), "cpu-µs/op")
			b.ReportMetric(float64(got), "events/op")
		})
	}
}
