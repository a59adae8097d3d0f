package token_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/tidings/tidings"
	"github.com/tidings/tidings/token"
)

// apps is an AppService holding a fixed set of apps; only FindAppByID is
// used by Verify.
type apps struct {
	tidings.AppService
	byID map[string]*tidings.App
	err  error // returned by FindAppByID when set
}

func (a *apps) FindAppByID(_ context.Context, id string) (*tidings.App, error) {
	if a.err != nil {
		return nil, a.err
	}
	app, ok := a.byID[id]
	if !ok {
		return nil, tidings.Errorf(tidings.ENotFound, "app not found")
	}
	return app, nil
}

var (
	appA = &tidings.App{ID: "app-a", SigningSecret: "secret-of-app-a-0123456789abcdef"}
	appB = &tidings.App{ID: "app-b", SigningSecret: "secret-of-app-b-0123456789abcdef"}
	now  = time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)
)

func newApps() *apps {
	return &apps{byID: map[string]*tidings.App{appA.ID: appA, appB.ID: appB}}
}

// sign signs claims with method and key, as a customer backend (or an
// attacker) using any JWT library could.
func sign(t *testing.T, method jwt.SigningMethod, key any, claims jwt.MapClaims) string {
	t.Helper()
	s, err := jwt.NewWithClaims(method, claims).SignedString(key)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func validClaims(app string) jwt.MapClaims {
	return jwt.MapClaims{
		"sub": "alice",
		"app": app,
		"iat": now.Unix(),
		"exp": now.Add(time.Hour).Unix(),
		"jti": "x",
	}
}

// assertRejected checks that Verify rejects tok as unauthenticated with a
// message containing want, and that the message leaks neither the token
// nor any signing secret.
func assertRejected(t *testing.T, tok, want string, at time.Time) {
	t.Helper()
	caller, err := token.Verify(context.Background(), newApps(), tok, at)
	if err == nil {
		t.Fatalf("Verify accepted the token as %+v; want rejection", caller)
	}
	if code := tidings.ErrorCode(err); code != tidings.EUnauthenticated {
		t.Fatalf("error code = %q (%v); want %q", code, err, tidings.EUnauthenticated)
	}
	msg := tidings.ErrorMessage(err)
	if !strings.Contains(msg, want) {
		t.Errorf("message = %q; want it to contain %q", msg, want)
	}
	for _, secret := range []string{tok, appA.SigningSecret, appB.SigningSecret} {
		if secret != "" && strings.Contains(err.Error(), secret) {
			t.Errorf("error %q leaks a token or secret", err)
		}
	}
	if caller != (tidings.Caller{}) {
		t.Errorf("caller = %+v on failure; want zero", caller)
	}
}

func TestMintVerifyRoundTrip(t *testing.T) {
	tok, exp, err := token.Mint(appA, "alice", time.Hour, now)
	if err != nil {
		t.Fatal(err)
	}
	if !exp.Equal(now.Add(time.Hour)) {
		t.Errorf("expiresAt = %v; want %v", exp, now.Add(time.Hour))
	}
	caller, err := token.Verify(context.Background(), newApps(), tok, now.Add(time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	want := tidings.Caller{AppID: "app-a", UserID: "alice"}
	if caller != want {
		t.Errorf("caller = %+v; want %+v", caller, want)
	}
	if !caller.IsUser() {
		t.Error("caller is not a user")
	}
}

func TestMintedTokenHasDocumentedClaims(t *testing.T) {
	tok, _, err := token.Mint(appA, "alice", time.Hour, now)
	if err != nil {
		t.Fatal(err)
	}
	parts := strings.Split(tok, ".")
	if len(parts) != 3 {
		t.Fatalf("token has %d parts", len(parts))
	}
	header := decodeSegment(t, parts[0])
	if header["alg"] != "HS256" {
		t.Errorf("alg = %v; want HS256", header["alg"])
	}
	c := decodeSegment(t, parts[1])
	if c["sub"] != "alice" || c["app"] != "app-a" {
		t.Errorf("sub, app = %v, %v; want alice, app-a", c["sub"], c["app"])
	}
	if c["iat"] != float64(now.Unix()) || c["exp"] != float64(now.Add(time.Hour).Unix()) {
		t.Errorf("iat, exp = %v, %v", c["iat"], c["exp"])
	}
	if jti, _ := c["jti"].(string); jti == "" {
		t.Error("no jti")
	}

	// Two tokens minted at the same time differ by their jti.
	tok2, _, _ := token.Mint(appA, "alice", time.Hour, now)
	if tok2 == tok {
		t.Error("two minted tokens are identical")
	}
}

func decodeSegment(t *testing.T, seg string) map[string]any {
	t.Helper()
	b, err := base64.RawURLEncoding.DecodeString(seg)
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	return m
}

// A customer backend minting tokens with its own JWT library and the
// app's signing secret gets tokens Tidings accepts.
func TestVerifyAcceptsTokenMintedByCustomer(t *testing.T) {
	tok := sign(t, jwt.SigningMethodHS256, []byte(appB.SigningSecret), jwt.MapClaims{
		"sub": "bob", "app": "app-b", "exp": now.Add(time.Minute).Unix(),
	})
	caller, err := token.Verify(context.Background(), newApps(), tok, now)
	if err != nil {
		t.Fatal(err)
	}
	if want := (tidings.Caller{AppID: "app-b", UserID: "bob"}); caller != want {
		t.Errorf("caller = %+v; want %+v", caller, want)
	}
}

func TestVerifyExpired(t *testing.T) {
	tok, exp, err := token.Mint(appA, "alice", time.Hour, now)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := token.Verify(context.Background(), newApps(), tok, exp.Add(-time.Second)); err != nil {
		t.Errorf("token rejected a second before its expiry: %v", err)
	}
	// No leeway on exp: refused from its expiry on, as on every transport.
	assertRejected(t, tok, "expired", exp)
	assertRejected(t, tok, "expired", exp.Add(time.Second))
}

func TestVerifyNotValidYet(t *testing.T) {
	c := validClaims("app-a")
	c["nbf"] = now.Add(time.Hour).Unix()
	tok := sign(t, jwt.SigningMethodHS256, []byte(appA.SigningSecret), c)
	assertRejected(t, tok, "not valid yet", now)
}

func TestVerifyWrongSecret(t *testing.T) {
	tok := sign(t, jwt.SigningMethodHS256, []byte("not-the-secret"), validClaims("app-a"))
	assertRejected(t, tok, "signature is invalid", now)
}

func TestVerifyTamperedClaims(t *testing.T) {
	tok, _, err := token.Mint(appA, "alice", time.Hour, now)
	if err != nil {
		t.Fatal(err)
	}
	parts := strings.Split(tok, ".")
	c := decodeSegment(t, parts[1])
	c["sub"] = "mallory"
	b, _ := json.Marshal(c)
	parts[1] = base64.RawURLEncoding.EncodeToString(b)
	assertRejected(t, strings.Join(parts, "."), "signature is invalid", now)
}

func TestVerifyAnotherAppsToken(t *testing.T) {
	// A token of app B verifies as a caller of app B, never of app A.
	tokB, _, err := token.Mint(appB, "alice", time.Hour, now)
	if err != nil {
		t.Fatal(err)
	}
	caller, err := token.Verify(context.Background(), newApps(), tokB, now)
	if err != nil {
		t.Fatal(err)
	}
	if caller.AppID != "app-b" {
		t.Errorf("app B's token verified as app %q", caller.AppID)
	}

	// Rewriting its app claim to app A breaks the signature.
	parts := strings.Split(tokB, ".")
	c := decodeSegment(t, parts[1])
	c["app"] = "app-a"
	b, _ := json.Marshal(c)
	parts[1] = base64.RawURLEncoding.EncodeToString(b)
	assertRejected(t, strings.Join(parts, "."), "signature is invalid", now)

	// Someone holding app B's secret cannot mint tokens for app A.
	forged := sign(t, jwt.SigningMethodHS256, []byte(appB.SigningSecret), validClaims("app-a"))
	assertRejected(t, forged, "signature is invalid", now)
}

func TestVerifyRejectsOtherAlgorithms(t *testing.T) {
	t.Run("none", func(t *testing.T) {
		tok := sign(t, jwt.SigningMethodNone, jwt.UnsafeAllowNoneSignatureType, validClaims("app-a"))
		assertRejected(t, tok, "only HS256", now)
	})
	t.Run("RS256", func(t *testing.T) {
		key, err := rsa.GenerateKey(rand.Reader, 2048)
		if err != nil {
			t.Fatal(err)
		}
		tok := sign(t, jwt.SigningMethodRS256, key, validClaims("app-a"))
		assertRejected(t, tok, "only HS256", now)
	})
	t.Run("HS512 with the right secret", func(t *testing.T) {
		tok := sign(t, jwt.SigningMethodHS512, []byte(appA.SigningSecret), validClaims("app-a"))
		assertRejected(t, tok, "only HS256", now)
	})
	t.Run("unknown alg", func(t *testing.T) {
		header := base64.RawURLEncoding.EncodeToString([]byte(`{"alg":"XX999","typ":"JWT"}`))
		payload := base64.RawURLEncoding.EncodeToString([]byte(`{"sub":"alice","app":"app-a","exp":9999999999}`))
		assertRejected(t, header+"."+payload+".c2ln", "only HS256", now)
	})
}

func TestVerifyMissingExp(t *testing.T) {
	c := validClaims("app-a")
	delete(c, "exp")
	tok := sign(t, jwt.SigningMethodHS256, []byte(appA.SigningSecret), c)
	assertRejected(t, tok, "no exp", now)
}

func TestVerifyMissingClaims(t *testing.T) {
	t.Run("app", func(t *testing.T) {
		c := validClaims("app-a")
		delete(c, "app")
		tok := sign(t, jwt.SigningMethodHS256, []byte(appA.SigningSecret), c)
		assertRejected(t, tok, "no app claim", now)
	})
	t.Run("sub", func(t *testing.T) {
		c := validClaims("app-a")
		delete(c, "sub")
		tok := sign(t, jwt.SigningMethodHS256, []byte(appA.SigningSecret), c)
		assertRejected(t, tok, "sub", now)
	})
}

func TestVerifyUnknownApp(t *testing.T) {
	tok := sign(t, jwt.SigningMethodHS256, []byte("whatever"), validClaims("app-gone"))
	assertRejected(t, tok, "unknown app", now)
}

func TestVerifyMalformed(t *testing.T) {
	for _, tok := range []string{
		"not-a-jwt",
		"a.b.c",
		"eyJhbGciOiJIUzI1NiJ9.bm90IGpzb24.c2ln", // payload is not JSON
		"eyJhbGciOiJIUzI1NiJ9.eyJhcHAiOjQyfQ.c2ln",                         // app is a number
		"eyJhbGciOiJIUzI1NiJ9.eyJhcHAiOiJhcHAtYSIsImV4cCI6InNvb24ifQ.c2ln", // exp is a string
	} {
		assertRejected(t, tok, "malformed", now)
	}
	assertRejected(t, "", "missing", now)
}

func TestVerifyStorageFailureIsNotAuthFailure(t *testing.T) {
	tok, _, err := token.Mint(appA, "alice", time.Hour, now)
	if err != nil {
		t.Fatal(err)
	}
	down := errors.New("database is locked")
	a := newApps()
	a.err = down
	_, err = token.Verify(context.Background(), a, tok, now)
	if !errors.Is(err, down) {
		t.Fatalf("err = %v; want the storage error, so the client is not told its token is bad", err)
	}
	if code := tidings.ErrorCode(err); code != tidings.EInternal {
		t.Errorf("code = %q; want %q", code, tidings.EInternal)
	}
}

func TestVerifyRejectsAppWithoutSecret(t *testing.T) {
	// With an empty HMAC key anyone could sign tokens; such an app must
	// accept none.
	tok := sign(t, jwt.SigningMethodHS256, []byte("x"), validClaims("no-secret"))
	a := newApps()
	a.byID["no-secret"] = &tidings.App{ID: "no-secret"}
	_, err := token.Verify(context.Background(), a, tok, now)
	if tidings.ErrorCode(err) != tidings.EUnauthenticated {
		t.Fatalf("err = %v; want unauthenticated", err)
	}
}

func TestMintRejectsBadInput(t *testing.T) {
	if _, _, err := token.Mint(&tidings.App{ID: "a"}, "alice", time.Hour, now); err == nil {
		t.Error("minted a token for an app without signing secret")
	}
	if _, _, err := token.Mint(appA, "", time.Hour, now); tidings.ErrorCode(err) != tidings.EInvalid {
		t.Errorf("empty user id: err = %v; want invalid_argument", err)
	}
	if _, _, err := token.Mint(appA, "alice", 0, now); tidings.ErrorCode(err) != tidings.EInvalid {
		t.Errorf("zero ttl: err = %v; want invalid_argument", err)
	}
}

// TestVerifyRejectsAnotherSpellingOfTheSignature: the last character of a
// base64url HS256 signature carries two unused bits, so four spellings
// decode to the same bytes; a lenient decoder would accept a token that
// is not the string minted. Only the minted string verifies.
func TestVerifyRejectsAnotherSpellingOfTheSignature(t *testing.T) {
	tok, _, err := token.Mint(appA, "alice", time.Hour, now)
	if err != nil {
		t.Fatal(err)
	}
	const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
	last := strings.IndexByte(alphabet, tok[len(tok)-1])
	other := tok[:len(tok)-1] + string(alphabet[last^1]) // flips an unused bit
	sig := func(s string) []byte {
		b, err := base64.RawURLEncoding.DecodeString(s[strings.LastIndexByte(s, '.')+1:])
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	if !bytes.Equal(sig(tok), sig(other)) {
		t.Fatalf("the two spellings decode to different signatures: the test does not test what it says")
	}
	assertRejected(t, other, "malformed", now)
}
