package sqlite_test

import (
	"sync"
	"testing"
	"time"

	"github.com/tidings/tidings"
	"github.com/tidings/tidings/sqlite"
)

// A job refused before it wrote anything (a send into a conversation its
// sender may not see) fails alone: the jobs committed with it are kept,
// and their batch does not run again. A job that fails after it wrote is
// undone alone too, by running the batch again with a savepoint per job.
func TestAJobRefusedBeforeWritingCostsNoRerun(t *testing.T) {
	e := newEnv(t)
	e.mkUsers(t, "a", "alice", "bob", "mallory")
	c := e.mkConv(t, "a", "alice", tidings.NewConversation{Participants: []tidings.NewParticipant{{UserID: "bob"}}})
	push := sqlite.NewPushService(e.db)

	// batch runs the jobs together, in one batch of the writer.
	batch := func(jobs ...func() error) []error {
		t.Helper()
		release := sqlite.HoldWriter(e.db)
		errs := make([]error, len(jobs))
		var wg sync.WaitGroup
		for i, job := range jobs {
			wg.Go(func() { errs[i] = job() })
		}
		for sqlite.QueuedJobs(e.db) < len(jobs) {
			time.Sleep(time.Millisecond)
		}
		release()
		wg.Wait()
		return errs
	}
	send := func(from string) func() error {
		return func() error {
			_, _, err := e.messages.SendMessage(user("a", from), c.ID, tidings.NewMessage{Parts: text("hi from " + from)})
			return err
		}
	}

	errs := batch(send("alice"), send("mallory"), send("bob"))
	if errs[0] != nil || errs[2] != nil {
		t.Fatalf("alice's and bob's sends: %v, %v", errs[0], errs[2])
	}
	if code := tidings.ErrorCode(errs[1]); code != tidings.ENotFound {
		t.Fatalf("mallory's send into a conversation she is not in: %v, want %s", errs[1], tidings.ENotFound)
	}
	if n := counter(t, e.db, "tidings_store_batch_reruns_total"); n != 0 {
		t.Fatalf("%v batches ran again for a send refused before it wrote", n)
	}

	errs = batch(send("alice"), func() error { return sqlite.InsertPushTargetThenFail(e.db, "a", "bob") }, send("bob"))
	if errs[0] != nil || errs[1] == nil || errs[2] != nil {
		t.Fatalf("sends and a write that fails after it wrote: %v", errs)
	}
	if n := counter(t, e.db, "tidings_store_batch_reruns_total"); n != 1 {
		t.Fatalf("%v batches ran again, want the one with a job that failed after it wrote", n)
	}
	if push.HasPushTargets("a") {
		t.Fatal("the failed job's push target was kept")
	}
	page := must[*tidings.MessagePage](t)(e.messages.ListMessages(user("a", "bob"), c.ID, tidings.MessageFilter{}))
	if len(page.Messages) != 4 {
		t.Fatalf("%d messages stored, want the 4 sends that succeeded", len(page.Messages))
	}
	for i, m := range page.Messages {
		if m.Sender.ID == "mallory" {
			t.Fatalf("message %d is mallory's", i)
		}
	}
}
