package postgres

import (
	"context"

	"github.com/tidings/tidings"
)

// The server-side API's store methods (issue #12) not yet built on
// PostgreSQL. Each is removed from this file as it is built.

func errNotBuilt(what string) error {
	return tidings.Errorf(tidings.EInternal, "%s is not yet built on PostgreSQL", what)
}

// DeactivateUser is not built yet.
func (s *UserService) DeactivateUser(ctx context.Context, id string) (*tidings.User, error) {
	return nil, errNotBuilt("deactivating a user")
}

// ReactivateUser is not built yet.
func (s *UserService) ReactivateUser(ctx context.Context, id string) (*tidings.User, error) {
	return nil, errNotBuilt("reactivating a user")
}

// RevokeTokens is not built yet.
func (s *UserService) RevokeTokens(ctx context.Context, id string) (*tidings.User, error) {
	return nil, errNotBuilt("revoking a user's tokens")
}

// DeleteUser is not built yet.
func (s *UserService) DeleteUser(ctx context.Context, id string, messages tidings.MessagesOfDeleted) error {
	return errNotBuilt("deleting a user")
}
