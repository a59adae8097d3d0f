package tidings

import (
	"context"
	"time"
)

// App is a tenant: a customer's application (the seeds' apiSpace or
// APP_ID). Nothing crosses between apps.
type App struct {
	ID   string `json:"id"`
	Name string `json:"name"`
	// ServerKey authenticates the customer's backend ("tsk_…"). It manages
	// users and mints user tokens. It is stored hashed: only CreateApp and
	// RotateServerKey return it, once; an app read back has it empty.
	// Never logged.
	ServerKey string `json:"-"`
	// SigningSecret signs user access tokens (HS256). The customer's
	// backend may mint tokens itself with it. Never logged.
	SigningSecret string `json:"-"`
	// PreviousSigningSecret, after RotateSigningSecret, still verifies
	// the tokens it signed until PreviousSecretUntil (the overlap during
	// which both secrets verify); it signs none. Never logged.
	PreviousSigningSecret string     `json:"-"`
	PreviousSecretUntil   *time.Time `json:"previousSecretUntil,omitempty"`
	// UserEditableFields are the profile fields (ProfileFields) a user may
	// change in their own profile; the others only the app's server may
	// set. DefaultUserEditableFields unless the app says otherwise.
	UserEditableFields []string  `json:"userEditableFields"`
	CreatedAt          time.Time `json:"createdAt"`
}

// AppUpdate holds the app settings to change; nil fields are left alone.
type AppUpdate struct {
	Name               *string   `json:"name"`
	UserEditableFields *[]string `json:"userEditableFields"`
}

// VerifyingSecrets returns the secrets that verify the app's tokens at
// now: the signing secret, and the previous one during its overlap.
func (a *App) VerifyingSecrets(now time.Time) []string {
	secrets := []string{a.SigningSecret}
	if a.PreviousSigningSecret != "" && a.PreviousSecretUntil != nil && now.Before(*a.PreviousSecretUntil) {
		secrets = append(secrets, a.PreviousSigningSecret)
	}
	return secrets
}

// UserMayEdit reports whether a user may change the profile field
// (a ProfileFields name) of their own profile.
func (a *App) UserMayEdit(field string) bool {
	for _, f := range a.UserEditableFields {
		if f == field {
			return true
		}
	}
	return false
}

// AppService manages apps. Creating, listing and rotating keys are an
// operator's tools (the CLI), not exposed to app callers, so they take no
// caller from the context.
type AppService interface {
	// CreateApp creates an app with a new server key and signing secret.
	// An empty id gets a generated one. EConflict if the id is taken.
	CreateApp(ctx context.Context, id, name string) (*App, error)
	// FindAppByID returns ENotFound if there is no such app.
	FindAppByID(ctx context.Context, id string) (*App, error)
	// FindAppByServerKey returns EUnauthenticated if no app has that key.
	FindAppByServerKey(ctx context.Context, key string) (*App, error)
	// ListApps returns every app, oldest first.
	ListApps(ctx context.Context) ([]*App, error)
	// RotateServerKey replaces the app's server key and returns the app
	// with the new key (the only time it can be read).
	RotateServerKey(ctx context.Context, id string) (*App, error)
	// RotateSigningSecret gives the app a new signing secret, which signs
	// tokens from now on, and returns the app with it. The secret it
	// replaces becomes PreviousSigningSecret: it keeps verifying the
	// tokens it signed for overlap (0: not at all), so that a backend that
	// mints tokens itself can move to the new secret meanwhile. A previous
	// secret from an earlier rotation is forgotten. ENotFound if there is
	// no such app, EInvalid for a negative overlap.
	RotateSigningSecret(ctx context.Context, id string, overlap time.Duration) (*App, error)
	// UpdateApp changes the app's settings and returns the app.
	// ENotFound if there is no such app, EInvalid for a bad setting.
	UpdateApp(ctx context.Context, id string, upd AppUpdate) (*App, error)
}
