// Package token mints and verifies user access tokens.
//
// An access token is a JWT signed with HS256 using the app's signing
// secret, so that a customer's backend holding the secret can mint tokens
// itself, without calling Tidings. Its claims are:
//
//	sub  the user id (required)
//	app  the app id (required)
//	exp  the expiry time, in seconds since the Unix epoch (required)
//	iat  the time the token was minted
//	jti  a random token id
//
// Tokens signed with any other algorithm, tokens without exp and tokens
// naming an unknown app are rejected.
package token

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/tidings/tidings"
)

// Algorithm is the only signing algorithm accepted.
const Algorithm = "HS256"

// Leeway is the clock skew tolerated when checking nbf and iat: a token
// minted by a server whose clock runs a little ahead is not refused as
// "not valid yet". The expiry (exp) has no leeway: a token is refused from
// its exp on, by every transport alike (REST, polling, WebSocket).
const Leeway = 30 * time.Second

// claims are the claims of an access token.
type claims struct {
	App string `json:"app"`
	jwt.RegisteredClaims
}

// Mint returns a signed token for userID in app, valid for ttl from now.
// The returned expiry is the one written in the token, which has a
// precision of one second.
func Mint(app *tidings.App, userID string, ttl time.Duration, now time.Time) (token string, expiresAt time.Time, err error) {
	switch {
	case app == nil || app.ID == "":
		return "", time.Time{}, errors.New("token: mint: no app")
	case app.SigningSecret == "":
		return "", time.Time{}, fmt.Errorf("token: mint: app %q has no signing secret", app.ID)
	case !tidings.ValidID(userID):
		return "", time.Time{}, tidings.Errorf(tidings.EInvalid, "invalid user id")
	case ttl < time.Second:
		return "", time.Time{}, tidings.Errorf(tidings.EInvalid, "token lifetime must be at least one second")
	}
	c := claims{
		App: app.ID,
		RegisteredClaims: jwt.RegisteredClaims{
			Subject:   userID,
			IssuedAt:  jwt.NewNumericDate(now),
			ExpiresAt: jwt.NewNumericDate(now.Add(ttl)),
			ID:        tidings.NewID(),
		},
	}
	signed, err := jwt.NewWithClaims(jwt.SigningMethodHS256, c).SignedString([]byte(app.SigningSecret))
	if err != nil {
		return "", time.Time{}, fmt.Errorf("token: mint: %w", err)
	}
	return signed, c.ExpiresAt.Time, nil
}

// Verify checks tok and returns the user it was minted for. It reads the
// app claim without trusting it, loads that app through apps.FindAppByID,
// then verifies the signature with the app's signing secret, so a token of
// one app can never be used in another. The expiry is required and checked
// against now, without leeway: the token is refused from exp on.
//
// Every problem with the token itself is a *tidings.Error with code
// tidings.EUnauthenticated, whose message says what is wrong (malformed,
// unknown app, bad signature, expired…) and never includes the token or
// the secret. A failure to load the app other than ENotFound (e.g. the
// database is down) is returned as it is, since the token may be fine.
func Verify(ctx context.Context, apps tidings.AppService, tok string, now time.Time) (tidings.Caller, error) {
	c, _, err := VerifyWithExpiry(ctx, apps, tok, now)
	return c, err
}

// VerifyWithExpiry is Verify, also returning when the token expires (for
// connections that must end when their token does).
func VerifyWithExpiry(ctx context.Context, apps tidings.AppService, tok string, now time.Time) (tidings.Caller, time.Time, error) {
	v, err := VerifyToken(ctx, apps, tok, now)
	return v.Caller, v.ExpiresAt, err
}

// Verified is what VerifyToken learns of a valid token.
type Verified struct {
	tidings.Caller
	// ExpiresAt is when the token expires; IssuedAt when it was issued
	// (its iat claim; zero without one), which tidings.User.AcceptsToken
	// checks against the user's revocations.
	ExpiresAt, IssuedAt time.Time
}

// VerifyToken is Verify, returning the token's expiry and issue times too.
func VerifyToken(ctx context.Context, apps tidings.AppService, tok string, now time.Time) (Verified, error) {
	p, err := Parse(tok)
	if err != nil {
		return Verified{}, err
	}
	app, err := apps.FindAppByID(ctx, p.App)
	if tidings.ErrorCode(err) == tidings.ENotFound {
		return Verified{}, unauthenticated("access token names an unknown app")
	} else if err != nil {
		return Verified{}, fmt.Errorf("token: find app: %w", err)
	}
	return p.Verify(app, now)
}

// Parsed is an access token decoded once, nothing of it trusted yet: App
// and Subject say which app's secret must have signed it (and which user
// it claims), to load them, and Verify then checks it against that app.
type Parsed struct {
	// App and Subject are the token's app and sub claims, not verified.
	App, Subject string

	signed string // header.claims, which the signature signs
	sig    []byte
	c      claims
}

// parser decodes every token, through ParseUnverified alone, which
// changes nothing in it (ParseWithClaims sets its validator on first
// use: not for concurrent callers). Strict
// decoding: one token, one spelling. A lenient base64 decoder ignores the
// unused bits of a segment's last character, so a token changed there
// would verify as the one minted.
var parser = jwt.NewParser(jwt.WithStrictDecoding())

// Parse decodes tok without verifying it (see Parsed). Its errors are
// those of VerifyToken for a token malformed, signed with another
// algorithm, or without an app claim.
func Parse(tok string) (*Parsed, error) {
	if tok == "" {
		return nil, unauthenticated("missing access token")
	}
	p := &Parsed{}
	t, parts, err := parser.ParseUnverified(tok, &p.c)
	if err != nil {
		return nil, verifyError(err)
	}
	if alg := t.Method.Alg(); alg != Algorithm {
		return nil, unauthenticated("access token is signed with %s; only %s is accepted", alg, Algorithm)
	}
	if p.c.App == "" {
		return nil, unauthenticated("access token has no app claim")
	}
	p.App, p.Subject = p.c.App, p.c.Subject
	p.signed, p.sig = tok[:len(parts[0])+1+len(parts[1])], t.Signature
	return p, nil
}

// Verify checks that the token was signed by app (the one its app claim
// names: see Parsed), with its signing secret or the one it replaced
// while their overlap lasts, and that it is valid at now, as VerifyToken
// does, without decoding it again.
func (p *Parsed) Verify(app *tidings.App, now time.Time) (Verified, error) {
	if app == nil || p.App != app.ID {
		return Verified{}, unauthenticated("access token names an unknown app")
	}
	if app.SigningSecret == "" {
		// An empty HMAC key would let anyone sign tokens.
		return Verified{}, unauthenticated("the app of this access token cannot verify tokens")
	}
	// The signing secret, or the one it replaced while their overlap
	// lasts (App.RotateSigningSecret): a signature either made is good.
	err := jwt.ErrSignatureInvalid
	for _, secret := range app.VerifyingSecrets(now) {
		if err = jwt.SigningMethodHS256.Verify(p.signed, p.sig, []byte(secret)); err == nil {
			break
		}
	}
	if err != nil {
		return Verified{}, unauthenticated("access token signature is invalid")
	}
	validator := jwt.NewValidator(
		jwt.WithExpirationRequired(),
		jwt.WithLeeway(Leeway),
		jwt.WithTimeFunc(func() time.Time { return now }),
	)
	if err := validator.Validate(p.c); err != nil {
		return Verified{}, verifyError(err)
	}
	c := &p.c
	// The validator allowed Leeway on exp too: a credential past its
	// expiry is refused at once.
	if !now.Before(c.ExpiresAt.Time) {
		return Verified{}, unauthenticated("access token has expired")
	}
	if !tidings.ValidID(c.Subject) {
		return Verified{}, unauthenticated("access token has no valid sub (user id) claim")
	}
	v := Verified{Caller: tidings.Caller{AppID: app.ID, UserID: c.Subject}, ExpiresAt: c.ExpiresAt.Time}
	if c.IssuedAt != nil {
		v.IssuedAt = c.IssuedAt.Time
	}
	return v, nil
}

// verifyError turns an error of the jwt package into an EUnauthenticated
// error with a message fit for the client. The jwt package's own messages
// are not used: they are not written for API clients.
func verifyError(err error) error {
	switch {
	case errors.Is(err, jwt.ErrTokenMalformed):
		return unauthenticated("access token is malformed")
	case errors.Is(err, jwt.ErrTokenUnverifiable):
		return unauthenticated("access token uses an unsupported signing algorithm; only %s is accepted", Algorithm)
	case errors.Is(err, jwt.ErrTokenSignatureInvalid):
		return unauthenticated("access token signature is invalid")
	case errors.Is(err, jwt.ErrTokenRequiredClaimMissing):
		return unauthenticated("access token has no exp (expiry) claim")
	case errors.Is(err, jwt.ErrTokenExpired):
		return unauthenticated("access token has expired")
	case errors.Is(err, jwt.ErrTokenNotValidYet), errors.Is(err, jwt.ErrTokenUsedBeforeIssued):
		return unauthenticated("access token is not valid yet")
	default:
		return unauthenticated("access token is invalid")
	}
}

func unauthenticated(format string, args ...any) error {
	return tidings.Errorf(tidings.EUnauthenticated, format, args...)
}
