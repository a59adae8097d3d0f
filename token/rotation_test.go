package token_test

import (
	"context"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/tidings/tidings"
	"github.com/tidings/tidings/token"
)

// TestVerifyDuringSecretRotation: after a rotation of the signing secret,
// tokens signed with the new secret verify; those signed with the old one
// verify until the overlap ends, and not after; the issue time comes back.
func TestVerifyDuringSecretRotation(t *testing.T) {
	until := now.Add(time.Hour)
	rotated := &tidings.App{ID: "app-r", SigningSecret: "new-secret-0123456789abcdef-new",
		PreviousSigningSecret: "old-secret-0123456789abcdef-old", PreviousSecretUntil: &until}
	a := &apps{byID: map[string]*tidings.App{rotated.ID: rotated}}
	claims := validClaims(rotated.ID)
	claims["exp"] = now.Add(3 * time.Hour).Unix()
	oldTok := sign(t, jwt.SigningMethodHS256, []byte(rotated.PreviousSigningSecret), claims)
	newTok := sign(t, jwt.SigningMethodHS256, []byte(rotated.SigningSecret), claims)
	otherTok := sign(t, jwt.SigningMethodHS256, []byte("some-other-secret-0123456789abc"), claims)
	ctx := context.Background()

	for what, tc := range map[string]struct {
		tok string
		at  time.Time
		ok  bool
	}{
		"new secret, in the overlap":    {newTok, now, true},
		"old secret, in the overlap":    {oldTok, now.Add(59 * time.Minute), true},
		"old secret, after the overlap": {oldTok, until, false},
		"new secret, after the overlap": {newTok, until.Add(time.Minute), true},
		"another secret":                {otherTok, now, false},
	} {
		v, err := token.VerifyToken(ctx, a, tc.tok, tc.at)
		switch {
		case tc.ok && (err != nil || v.UserID != "alice" || !v.IssuedAt.Equal(now)):
			t.Errorf("%s: %+v, %v; want alice, issued at %v", what, v, err, now)
		case !tc.ok && tidings.ErrorCode(err) != tidings.EUnauthenticated:
			t.Errorf("%s: %v, want unauthenticated", what, err)
		}
	}
}
