package postgres

import (
	"context"
	"time"

	"github.com/tidings/tidings"
)

// The server-side API's store methods (issue #12) not yet built on
// PostgreSQL. Each is removed from this file as it is built.

func errNotBuilt(what string) error {
	return tidings.Errorf(tidings.EInternal, "%s is not yet built on PostgreSQL", what)
}

// MuteParticipant is not built yet.
func (s *ConversationService) MuteParticipant(ctx context.Context, conversationID, userID string, muted bool) (*tidings.Participant, error) {
	return nil, errNotBuilt("muting a participant")
}

// RotateSigningSecret is not built yet.
func (s *AppService) RotateSigningSecret(ctx context.Context, id string, overlap time.Duration) (*tidings.App, error) {
	return nil, errNotBuilt("rotating a signing secret")
}
