package http

import (
	"net/http"

	"github.com/tidings/tidings"
)

// roleRequest is the body of PATCH .../participants/{userId}: a new role,
// a mute (or unmute), or both.
type roleRequest struct {
	Role  tidings.Role `json:"role"`
	Muted *bool        `json:"muted"`
}

func (s *Server) handleCreateConversation(w http.ResponseWriter, r *http.Request) error {
	var nc tidings.NewConversation
	if err := s.decodeJSON(w, r, &nc, bodyRequired); err != nil {
		return err
	}
	c, err := s.Conversations.CreateConversation(r.Context(), nc)
	if err != nil {
		return err
	}
	s.writeJSON(w, r, http.StatusCreated, c)
	return nil
}

func (s *Server) handleListConversations(w http.ResponseWriter, r *http.Request) error {
	limit, err := queryLimit(r)
	if err != nil {
		return err
	}
	includeDeleted, err := queryBool(r, "includeDeleted")
	if err != nil {
		return err
	}
	page, err := s.Conversations.ListConversations(r.Context(), tidings.ConversationFilter{
		Cursor:         r.URL.Query().Get("cursor"),
		Limit:          limit,
		IncludeDeleted: includeDeleted,
	})
	if err != nil {
		return err
	}
	if page.Conversations == nil {
		page.Conversations = []*tidings.Conversation{}
	}
	s.writeJSON(w, r, http.StatusOK, page)
	return nil
}

func (s *Server) handleGetConversation(w http.ResponseWriter, r *http.Request) error {
	c, err := s.Conversations.FindConversationByID(r.Context(), r.PathValue("conversationId"))
	if err != nil {
		return err
	}
	s.writeJSON(w, r, http.StatusOK, c)
	return nil
}

func (s *Server) handleUpdateConversation(w http.ResponseWriter, r *http.Request) error {
	var upd tidings.ConversationUpdate
	if err := s.decodeJSON(w, r, &upd, bodyRequired); err != nil {
		return err
	}
	c, err := s.Conversations.UpdateConversation(r.Context(), r.PathValue("conversationId"), upd)
	if err != nil {
		return err
	}
	s.writeJSON(w, r, http.StatusOK, c)
	return nil
}

func (s *Server) handleDeleteConversation(w http.ResponseWriter, r *http.Request) error {
	if err := s.Conversations.DeleteConversation(r.Context(), r.PathValue("conversationId")); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

func (s *Server) handleUndeleteConversation(w http.ResponseWriter, r *http.Request) error {
	c, err := s.Conversations.UndeleteConversation(r.Context(), r.PathValue("conversationId"))
	if err != nil {
		return err
	}
	s.writeJSON(w, r, http.StatusOK, c)
	return nil
}

func (s *Server) handleListParticipants(w http.ResponseWriter, r *http.Request) error {
	limit, err := queryInt(r, "limit", 1, tidings.MaxParticipantPage)
	if err != nil {
		return err
	}
	page, err := s.Conversations.ListParticipants(r.Context(), r.PathValue("conversationId"), tidings.ParticipantFilter{
		Cursor: r.URL.Query().Get("cursor"),
		Limit:  int(limit),
	})
	if err != nil {
		return err
	}
	if page.Participants == nil {
		page.Participants = []*tidings.Participant{}
	}
	s.writeJSON(w, r, http.StatusOK, page)
	return nil
}

func (s *Server) handleAddParticipant(w http.ResponseWriter, r *http.Request) error {
	var np tidings.NewParticipant
	if err := s.decodeJSON(w, r, &np, bodyRequired); err != nil {
		return err
	}
	p, err := s.Conversations.AddParticipant(r.Context(), r.PathValue("conversationId"), np)
	if err != nil {
		return err
	}
	s.writeJSON(w, r, http.StatusCreated, p)
	return nil
}

func (s *Server) handleUpdateParticipant(w http.ResponseWriter, r *http.Request) error {
	var req roleRequest
	if err := s.decodeJSON(w, r, &req, bodyRequired); err != nil {
		return err
	}
	if req.Role == "" && req.Muted == nil {
		return tidings.Errorf(tidings.EInvalid, "give a role, muted, or both")
	}
	ctx, convID, userID := r.Context(), r.PathValue("conversationId"), r.PathValue("userId")
	var p *tidings.Participant
	var err error
	if req.Role != "" {
		if p, err = s.Conversations.UpdateParticipant(ctx, convID, userID, req.Role); err != nil {
			return err
		}
	}
	if req.Muted != nil {
		if p, err = s.Conversations.MuteParticipant(ctx, convID, userID, *req.Muted); err != nil {
			return err
		}
	}
	s.writeJSON(w, r, http.StatusOK, p)
	return nil
}

// handleRemoveParticipant removes a participant; removing oneself is
// leaving the conversation.
func (s *Server) handleRemoveParticipant(w http.ResponseWriter, r *http.Request) error {
	ctx := r.Context()
	conversationID, userID := r.PathValue("conversationId"), r.PathValue("userId")
	var err error
	if caller, _ := tidings.CallerFromContext(ctx); caller.UserID == userID {
		err = s.Conversations.Leave(ctx, conversationID)
	} else {
		err = s.Conversations.RemoveParticipant(ctx, conversationID, userID)
	}
	if err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

func (s *Server) handleJoin(w http.ResponseWriter, r *http.Request) error {
	p, err := s.Conversations.Join(r.Context(), r.PathValue("conversationId"))
	if err != nil {
		return err
	}
	s.writeJSON(w, r, http.StatusOK, p)
	return nil
}

func (s *Server) handleLeave(w http.ResponseWriter, r *http.Request) error {
	if err := s.Conversations.Leave(r.Context(), r.PathValue("conversationId")); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}
