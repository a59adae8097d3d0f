package client

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sync"
)

// Cursor is the last update a device of a user processed.
type Cursor struct {
	AppID  string `json:"app"`
	UserID string `json:"userId"`
	Device string `json:"device"`
	Ref    string `json:"ref"`
}

// CursorStore keeps the cursor of an account across restarts (see
// WithCursorStore, for New and for AddAccount: give each account a store
// of its own). The client loads it once per login, before the account's
// first authentication, and uses it only if it names the same app, user
// and device; it saves it after its listeners have processed updates,
// before it acknowledges them to the server.
type CursorStore interface {
	// LoadCursor returns the stored cursor, or a zero Cursor if none.
	LoadCursor(ctx context.Context) (Cursor, error)
	// SaveCursor replaces the stored cursor.
	SaveCursor(ctx context.Context, c Cursor) error
}

// FileCursor is a CursorStore in a small JSON file. Each save replaces the
// file atomically (a temporary file, synced, then renamed over it), so the
// file always holds a whole cursor, even after a crash.
type FileCursor struct {
	path string
	mu   sync.Mutex
}

// NewFileCursor returns a store in the file at path; its directory must
// exist.
func NewFileCursor(path string) *FileCursor { return &FileCursor{path: path} }

// LoadCursor reads the file; a missing file is a zero Cursor.
func (f *FileCursor) LoadCursor(ctx context.Context) (Cursor, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	var c Cursor
	b, err := os.ReadFile(f.path)
	if errors.Is(err, fs.ErrNotExist) {
		return c, nil
	}
	if err != nil {
		return c, fmt.Errorf("client: read cursor: %w", err)
	}
	if err := json.Unmarshal(b, &c); err != nil {
		return Cursor{}, fmt.Errorf("client: cursor file %s is not valid: %w", f.path, err)
	}
	return c, nil
}

// SaveCursor writes c to the file atomically.
func (f *FileCursor) SaveCursor(ctx context.Context, c Cursor) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	b, err := json.Marshal(c)
	if err != nil {
		return err
	}
	dir, base := filepath.Split(f.path)
	if dir == "" {
		dir = "."
	}
	tmp, err := os.CreateTemp(dir, "."+base+".tmp*")
	if err != nil {
		return fmt.Errorf("client: save cursor: %w", err)
	}
	defer os.Remove(tmp.Name()) // fails harmlessly once renamed
	if _, err = tmp.Write(append(b, '\n')); err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp.Name(), f.path)
	}
	if err != nil {
		return fmt.Errorf("client: save cursor: %w", err)
	}
	// Make the rename itself durable; not every system can sync a directory.
	if d, err := os.Open(dir); err == nil {
		_ = d.Sync()
		d.Close()
	}
	return nil
}
