package client_test

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/tidings/tidings/client"
)

func TestFileCursor(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	dir := t.TempDir()
	f := client.NewFileCursor(filepath.Join(dir, "cursor.json"))
	if c, err := f.LoadCursor(ctx); err != nil || c != (client.Cursor{}) {
		t.Fatalf("load without a file: %+v, %v", c, err)
	}
	for _, ref := range []string{"1", "22", "333"} {
		want := client.Cursor{AppID: "app", UserID: "alice", Device: "laptop", Ref: ref}
		if err := f.SaveCursor(ctx, want); err != nil {
			t.Fatal(err)
		}
		if got, err := client.NewFileCursor(filepath.Join(dir, "cursor.json")).LoadCursor(ctx); err != nil || got != want {
			t.Fatalf("load: %+v, %v", got, err)
		}
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 1 {
		t.Fatalf("files left behind: %v", entries)
	}
	os.WriteFile(filepath.Join(dir, "cursor.json"), []byte("{half"), 0o600)
	if _, err := f.LoadCursor(ctx); err == nil {
		t.Fatal("a corrupt cursor file loaded")
	}
}

// The crash test runs a client in a child process that dies in the middle
// of a listener; the environment tells the child what to do.
const crashEnv = "TIDINGS_CLIENT_CRASH"

func TestCrashChild(t *testing.T) {
	spec := os.Getenv(crashEnv)
	if spec == "" {
		t.Skip("run by TestCursorSurvivesACrash")
	}
	var url, tok, path, conv string
	for _, kv := range strings.Split(spec, ";") {
		k, v, _ := strings.Cut(kv, "=")
		switch k {
		case "url":
			url = v
		case "token":
			tok = v
		case "cursor":
			path = v
		case "conv":
			conv = v
		}
	}
	c, err := client.New(url, client.WithToken(tok), client.WithDevice("laptop"), client.WithCursorStore(client.NewFileCursor(path)))
	if err != nil {
		t.Fatal(err)
	}
	c.AddEventListener(func(e client.Event) {
		if m, ok := e.(*client.MessageSent); ok && m.ConversationID == conv && m.Message.Parts[0].Data == "m003" {
			os.Exit(3) // a crash, in the middle of processing m003
		}
	})
	time.Sleep(wait)
	t.Fatal("the child did not crash")
}

func TestCursorSurvivesACrash(t *testing.T) {
	t.Parallel()
	s := startServer(t)
	s.mkUsers(t, "alice", "bob")
	conv := s.conv(t, "bob", "alice")
	path := filepath.Join(t.TempDir(), "cursor.json")
	store := client.NewFileCursor(path)
	tok := s.token(t, "alice", time.Hour)
	opts := []client.Option{client.WithToken(tok), client.WithDevice("laptop"), client.WithCursorStore(store)}

	// A first run processes two messages, and stops.
	c1 := newClient(t, s.URL(), opts...)
	rec1 := newRecorder()
	c1.AddEventListener(rec1.listen)
	waitConnected(t, c1)
	s.send(t, "bob", conv, "m000")
	s.send(t, "bob", conv, "m001")
	rec1.waitTexts(t, conv, 2)
	waitFor(t, "the cursor to be saved", func() bool {
		c, _ := store.LoadCursor(context.Background())
		return c.Ref == c1.LastRef()
	})
	c1.Close()

	// While it is off, more messages come; the second run dies in the
	// middle of the second of them.
	for _, text := range expected(5)[2:] {
		s.send(t, "bob", conv, text)
	}
	cmd := exec.Command(os.Args[0], "-test.run=^TestCrashChild$")
	cmd.Env = append(os.Environ(), crashEnv+"=url="+s.URL()+";token="+tok+";cursor="+path+";conv="+conv)
	out, err := cmd.CombinedOutput()
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 3 {
		t.Fatalf("the child did not crash as planned: %v\n%s", err, out)
	}

	// The third run gets again what the second did not finish: nothing
	// is lost, and it starts after what the first run processed.
	c3 := newClient(t, s.URL(), opts...)
	rec3 := newRecorder()
	c3.AddEventListener(rec3.listen)
	got := rec3.waitUntil(t, "m004", func([]client.Event) bool { return slices.Contains(rec3.texts(conv), "m004") })
	_ = got
	texts := rec3.texts(conv)
	if len(texts) < 2 || texts[0] < "m002" || texts[0] > "m003" || !slices.Equal(texts, expected(5)[len(expected(5))-len(texts):]) {
		t.Fatalf("after the crash, got %v", texts)
	}
}
