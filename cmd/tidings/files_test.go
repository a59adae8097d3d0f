package main

import (
	"os"
	"path/filepath"
	"testing"
)

// A partial upload left by a crash (kill -9 in the middle of an upload) is
// removed when the server starts again.
func TestServeRemovesPartialUploads(t *testing.T) {
	dir := t.TempDir()
	tmp := filepath.Join(dir, filesDir, "tmp")
	if err := os.MkdirAll(tmp, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(tmp, "put-123456"), make([]byte, 1<<20), 0o600); err != nil {
		t.Fatal(err)
	}
	_, stop := startServe(t, dir)
	defer stop()
	if entries, err := os.ReadDir(tmp); err != nil || len(entries) != 0 {
		t.Errorf("files/tmp holds %d entries (%v) once the server listens; want none", len(entries), err)
	}
}
