package tidings

import (
	"crypto/rand"
	"encoding/base32"
	"encoding/binary"
	"regexp"
	"time"
)

var idEncoding = base32.NewEncoding("0123456789abcdefghijklmnopqrstuv").WithPadding(base32.NoPadding)

// NewID returns a new random identifier: 26 lowercase characters that sort
// by creation time (48-bit milliseconds, then 80 random bits).
func NewID() string {
	var b [16]byte
	binary.BigEndian.PutUint64(b[:8], uint64(time.Now().UnixMilli())<<16)
	_, _ = rand.Read(b[6:])
	return idEncoding.EncodeToString(b[:])
}

// NewSecret returns a random secret of n bytes, base32 encoded, with the
// given prefix (e.g. "tsk_" for server keys).
func NewSecret(prefix string, n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return prefix + idEncoding.EncodeToString(b)
}

var idPattern = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._@:-]{0,127}$`)

// ValidID reports whether s can be an identifier chosen by a customer
// (user ids, conversation ids, client message ids): 1 to 128 characters
// of letters, digits and . _ @ : - , not starting with punctuation.
func ValidID(s string) bool { return idPattern.MatchString(s) }
