package storetest

import (
	"context"
	"testing"
	"time"

	"github.com/tidings/tidings"
)

// TestRotateSigningSecret: rotating an app's signing secret gives it a new
// one and keeps the one replaced as the previous secret until the overlap
// ends (and both verify meanwhile); a second rotation forgets the first
// secret. The server key does not change.
func TestRotateSigningSecret(t *testing.T, newStores Factory) {
	f := newFixture(t, newStores)
	ctx := context.Background()
	before := must[*tidings.App](t)(f.Apps.FindAppByID(ctx, "a"))
	start := time.Now()
	app := must[*tidings.App](t)(f.Apps.RotateSigningSecret(ctx, "a", time.Hour))
	if app.SigningSecret == "" || app.SigningSecret == before.SigningSecret || app.PreviousSigningSecret != before.SigningSecret ||
		app.PreviousSecretUntil == nil || app.PreviousSecretUntil.Before(start.Add(time.Hour-time.Second)) {
		t.Fatalf("after a rotation: secret changed %v, previous is the old one %v, until %v",
			app.SigningSecret != before.SigningSecret, app.PreviousSigningSecret == before.SigningSecret, app.PreviousSecretUntil)
	}
	read := must[*tidings.App](t)(f.Apps.FindAppByID(ctx, "a"))
	if read.SigningSecret != app.SigningSecret || read.PreviousSigningSecret != before.SigningSecret ||
		read.PreviousSecretUntil == nil || !read.PreviousSecretUntil.Equal(*app.PreviousSecretUntil) {
		t.Errorf("read back after the rotation: %+v", read)
	}
	if got := read.VerifyingSecrets(start); len(got) != 2 || got[0] != app.SigningSecret || got[1] != before.SigningSecret {
		t.Errorf("secrets verifying in the overlap: %d", len(got))
	}
	if got := read.VerifyingSecrets(start.Add(2 * time.Hour)); len(got) != 1 || got[0] != app.SigningSecret {
		t.Errorf("secrets verifying after the overlap: %d", len(got))
	}
	again := must[*tidings.App](t)(f.Apps.RotateSigningSecret(ctx, "a", 0))
	if again.PreviousSigningSecret != app.SigningSecret || len(again.VerifyingSecrets(time.Now())) != 1 {
		t.Errorf("a second rotation without overlap: previous is the last secret %v, verifying %d",
			again.PreviousSigningSecret == app.SigningSecret, len(again.VerifyingSecrets(time.Now())))
	}
	if other := must[*tidings.App](t)(f.Apps.FindAppByID(ctx, "b")); other.PreviousSigningSecret != "" || other.PreviousSecretUntil != nil {
		t.Error("another app's secret changed")
	}
	_, err := f.Apps.RotateSigningSecret(ctx, "nope", time.Hour)
	wantCode(t, "rotate an unknown app's secret", err, tidings.ENotFound)
	_, err = f.Apps.RotateSigningSecret(ctx, "a", -time.Second)
	wantCode(t, "a negative overlap", err, tidings.EInvalid)
}
