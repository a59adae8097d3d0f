package sqlite_test

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/tidings/tidings"
	"github.com/tidings/tidings/sqlite"
)

// TestAcknowledgedSendsSurviveKill9 runs senders in a child process,
// kills it with SIGKILL in the middle of its writes, and checks that every
// message whose send had returned is in the database afterwards.
func TestAcknowledgedSendsSurviveKill9(t *testing.T) {
	if testing.Short() {
		t.Skip("spawns a child process")
	}
	path := filepath.Join(t.TempDir(), "tidings.db")
	cmd := exec.Command(os.Args[0], "-test.run=^TestCrashChild$")
	cmd.Env = append(os.Environ(), "TIDINGS_CRASH_CHILD_DB="+path)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	acked := map[string]int64{}
	sc := bufio.NewScanner(out)
	killed := false
	for sc.Scan() {
		var id string
		var seq int64
		if _, err := fmt.Sscanf(sc.Text(), "ack %s %d", &id, &seq); err != nil {
			continue
		}
		acked[id] = seq
		if len(acked) == 2000 && !killed {
			cmd.Process.Signal(syscall.SIGKILL)
			killed = true
		}
	}
	cmd.Wait()
	if !killed {
		t.Fatalf("the child stopped after %d acknowledged sends, before it could be killed", len(acked))
	}

	e := openDB(t, path)
	ctx := tidings.NewContextWithCaller(context.Background(), tidings.Caller{AppID: "crash", UserID: "alice"})
	conv := must[*tidings.Conversation](t)(e.convs.FindConversationByID(ctx, "c"))
	seen := map[int64]bool{}
	after := int64(0)
	for {
		page := must[*tidings.MessagePage](t)(e.messages.ListMessages(ctx, "c", tidings.MessageFilter{After: &after, Limit: 200}))
		for _, m := range page.Messages {
			if want, ok := acked[m.ClientID]; ok && want != m.Seq {
				t.Fatalf("message %s has seq %d, acknowledged as %d", m.ClientID, m.Seq, want)
			}
			seen[m.Seq] = true
			after = m.Seq
		}
		if !page.HasMore {
			break
		}
	}
	for id, seq := range acked {
		if !seen[seq] {
			t.Errorf("acknowledged message %s (seq %d) was lost; lastSeq %d, stored %d, acked %d", id, seq, conv.LastSeq, len(seen), len(acked))
			break
		}
	}
	if int64(len(seen)) != conv.LastSeq {
		t.Fatalf("%d messages stored, lastSeq %d: gaps in the sequence", len(seen), conv.LastSeq)
	}
	t.Logf("%d sends acknowledged before SIGKILL, %d stored", len(acked), len(seen))
}

// TestCrashChild is the child of TestAcknowledgedSendsSurviveKill9.
func TestCrashChild(t *testing.T) {
	path := os.Getenv("TIDINGS_CRASH_CHILD_DB")
	if path == "" {
		t.Skip("only runs as the child of TestAcknowledgedSendsSurviveKill9")
	}
	db := sqlite.NewDB(path)
	if err := db.Open(); err != nil {
		t.Fatal(err)
	}
	bg := context.Background()
	if _, err := sqlite.NewAppService(db).CreateApp(bg, "crash", ""); err != nil {
		t.Fatal(err)
	}
	srv := tidings.NewContextWithCaller(bg, tidings.Caller{AppID: "crash", Server: true})
	users := sqlite.NewUserService(db)
	users.CreateUser(srv, &tidings.User{ID: "alice"})
	ctx := tidings.NewContextWithCaller(bg, tidings.Caller{AppID: "crash", UserID: "alice"})
	if _, err := sqlite.NewConversationService(db).CreateConversation(ctx, tidings.NewConversation{ID: "c"}); err != nil {
		t.Fatal(err)
	}
	msgs := sqlite.NewMessageService(db, 0)
	var mu sync.Mutex
	w := bufio.NewWriter(os.Stdout)
	deadline := time.Now().Add(30 * time.Second)
	var wg sync.WaitGroup
	for g := range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 10000 && time.Now().Before(deadline); i++ {
				id := fmt.Sprintf("g%d-%d", g, i)
				m, _, err := msgs.SendMessage(ctx, "c", tidings.NewMessage{ClientID: id, Parts: text("payload")})
				if err != nil {
					return
				}
				mu.Lock()
				fmt.Fprintf(w, "ack %s %d\n", id, m.Seq)
				w.Flush()
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
}
