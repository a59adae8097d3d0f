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
	// users and mints user tokens. Never logged.
	ServerKey string `json:"-"`
	// SigningSecret signs user access tokens (HS256). The customer's
	// backend may mint tokens itself with it. Never logged.
	SigningSecret string    `json:"-"`
	CreatedAt     time.Time `json:"createdAt"`
}

// AppService manages apps. It is an operator's tool (the CLI), not exposed
// to app callers, so it takes no caller from the context.
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
	// RotateServerKey replaces the app's server key and returns the app.
	RotateServerKey(ctx context.Context, id string) (*App, error)
}
