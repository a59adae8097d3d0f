package http

import (
	"context"
	"math"
	"net/http"

	"github.com/tidings/tidings"
)

// markRequest is the body of POST .../delivered and .../read.
type markRequest struct {
	// Seq is the message to mark up to; 0 (or absent) means the newest.
	Seq int64 `json:"seq"`
}

// handleSendMessage answers 201 with a new message, or 200 with the
// message first sent with the same clientId.
func (s *Server) handleSendMessage(w http.ResponseWriter, r *http.Request) error {
	var nm tidings.NewMessage
	if err := s.decodeJSON(w, r, &nm, bodyRequired); err != nil {
		return err
	}
	m, created, err := s.Messages.SendMessage(r.Context(), r.PathValue("conversationId"), nm)
	if err != nil {
		return err
	}
	status := http.StatusOK
	if created {
		status = http.StatusCreated
	}
	s.writeJSON(w, r, status, m)
	return nil
}

func (s *Server) handleListMessages(w http.ResponseWriter, r *http.Request) error {
	before, err := queryOptionalInt(r, "before", 1, math.MaxInt64)
	if err != nil {
		return err
	}
	after, err := queryOptionalInt(r, "after", 0, math.MaxInt64)
	if err != nil {
		return err
	}
	if before != nil && after != nil {
		return tidings.Errorf(tidings.EInvalid, "give either before or after, not both")
	}
	limit, err := queryLimit(r)
	if err != nil {
		return err
	}
	page, err := s.Messages.ListMessages(r.Context(), r.PathValue("conversationId"), tidings.MessageFilter{
		Before: before,
		After:  after,
		Limit:  limit,
	})
	if err != nil {
		return err
	}
	if page.Messages == nil {
		page.Messages = []*tidings.Message{}
	}
	s.writeJSON(w, r, http.StatusOK, page)
	return nil
}

func (s *Server) handleGetMessage(w http.ResponseWriter, r *http.Request) error {
	m, err := s.Messages.FindMessage(r.Context(), r.PathValue("conversationId"), r.PathValue("messageId"))
	if err != nil {
		return err
	}
	s.writeJSON(w, r, http.StatusOK, m)
	return nil
}

func (s *Server) handleEditMessage(w http.ResponseWriter, r *http.Request) error {
	var e tidings.MessageEdit
	if err := s.decodeJSON(w, r, &e, bodyRequired); err != nil {
		return err
	}
	m, err := s.Messages.EditMessage(r.Context(), r.PathValue("conversationId"), r.PathValue("messageId"), e)
	if err != nil {
		return err
	}
	s.writeJSON(w, r, http.StatusOK, m)
	return nil
}

func (s *Server) handleDeleteMessage(w http.ResponseWriter, r *http.Request) error {
	if _, err := s.Messages.DeleteMessage(r.Context(), r.PathValue("conversationId"), r.PathValue("messageId")); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

func (s *Server) handleMarkDelivered(w http.ResponseWriter, r *http.Request) error {
	return s.mark(w, r, s.Messages.MarkDelivered)
}

func (s *Server) handleMarkRead(w http.ResponseWriter, r *http.Request) error {
	return s.mark(w, r, s.Messages.MarkRead)
}

// mark serves the delivered and read endpoints with the given method of
// the MessageService.
func (s *Server) mark(w http.ResponseWriter, r *http.Request, markFunc func(ctx context.Context, conversationID string, seq int64) (*tidings.MessageStatus, error)) error {
	var req markRequest
	if err := s.decodeJSON(w, r, &req, bodyOptional); err != nil {
		return err
	}
	if req.Seq < 0 {
		return tidings.Errorf(tidings.EInvalid, "seq must not be negative")
	}
	st, err := markFunc(r.Context(), r.PathValue("conversationId"), req.Seq)
	if err != nil {
		return err
	}
	s.writeJSON(w, r, http.StatusOK, st)
	return nil
}
