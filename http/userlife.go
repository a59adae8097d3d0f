package http

import (
	"context"
	"log/slog"
	"net/http"

	"github.com/tidings/tidings"
	"github.com/tidings/tidings/protocol"
)

// UserSessions ends the realtime sessions of a user at once
// (realtime.Node implements it, in a cluster on every node).
type UserSessions interface {
	CloseUser(ctx context.Context, appID, userID, reason string) error
}

// closeSessions ends the user's realtime sessions after the app ended
// their access. The change is made whatever happens here: a failure
// (a cluster's broker down) is logged, and the user's sessions then end
// when they next authenticate, with their token refused.
func (s *Server) closeSessions(r *http.Request, userID, reason string) {
	if s.Sessions == nil {
		return
	}
	caller, _ := tidings.CallerFromContext(r.Context())
	if err := s.Sessions.CloseUser(r.Context(), caller.AppID, userID, reason); err != nil {
		s.logger().LogAttrs(r.Context(), slog.LevelWarn, "could not close the realtime sessions of a user",
			append(requestAttrs(r), errAttr(err))...)
	}
}

func (s *Server) handleDeactivateUser(w http.ResponseWriter, r *http.Request) error {
	u, err := s.Users.DeactivateUser(r.Context(), r.PathValue("userId"))
	if err != nil {
		return err
	}
	s.closeSessions(r, u.ID, protocol.ReasonUserDeactivated)
	s.writeJSON(w, r, http.StatusOK, u)
	return nil
}

func (s *Server) handleReactivateUser(w http.ResponseWriter, r *http.Request) error {
	u, err := s.Users.ReactivateUser(r.Context(), r.PathValue("userId"))
	if err != nil {
		return err
	}
	s.writeJSON(w, r, http.StatusOK, u)
	return nil
}

func (s *Server) handleRevokeTokens(w http.ResponseWriter, r *http.Request) error {
	u, err := s.Users.RevokeTokens(r.Context(), r.PathValue("userId"))
	if err != nil {
		return err
	}
	s.closeSessions(r, u.ID, protocol.ReasonTokensRevoked)
	s.writeJSON(w, r, http.StatusOK, u)
	return nil
}

func (s *Server) handleDeleteUser(w http.ResponseWriter, r *http.Request) error {
	id := r.PathValue("userId")
	mode := tidings.MessagesOfDeleted(r.URL.Query().Get("messages"))
	if mode != tidings.EraseMessages && mode != tidings.AnonymizeMessages {
		return tidings.Errorf(tidings.EInvalid, "say what becomes of the user's messages: ?messages=erase (emptied, with their files) or ?messages=anonymize (kept, without a sender)")
	}
	if err := s.Users.DeleteUser(r.Context(), id, mode); err != nil {
		return err
	}
	s.closeSessions(r, id, protocol.ReasonUserDeleted)
	w.WriteHeader(http.StatusNoContent)
	return nil
}
