package realtime

import (
	"context"
	"testing"
	"time"
)

// Commands that start together share a context, which gives each at
// least commandTimeout and ends with the node; a command that starts
// once it is past its share gets a new one.
func TestCommandsShareADeadlineOfAtLeastTheirTimeout(t *testing.T) {
	node := NewNode()
	node.Log = &cursorLog{cursors: map[string]int64{}}
	if err := node.Open(); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	a, b := node.commandContext(), node.commandContext()
	if a != b {
		t.Fatal("two commands started together got contexts of their own")
	}
	deadline, ok := a.Deadline()
	if !ok || deadline.Before(start.Add(commandTimeout)) || deadline.After(time.Now().Add(commandTimeout+commandShare)) {
		t.Fatalf("deadline %v from a start at %v: want %v to %v later", deadline, start, commandTimeout, commandTimeout+commandShare)
	}
	// Past its share, as if a second had passed.
	node.commandCtx.Load().until = time.Now().Add(-time.Millisecond)
	c := node.commandContext()
	if c == a {
		t.Fatal("a command started past the share got the old context")
	}
	if d, _ := c.Deadline(); !d.After(deadline) {
		t.Fatalf("the next context's deadline %v is not after the first's %v", d, deadline)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := node.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	for _, x := range []context.Context{a, c} {
		select {
		case <-x.Done():
		case <-time.After(10 * time.Second):
			t.Fatal("a command's context did not end with the node")
		}
	}
}
