package http

import (
	"net/http"

	"github.com/tidings/tidings"
)

// webhookList is the body of GET /v1/webhooks.
type webhookList struct {
	Webhooks []*tidings.WebhookEndpoint `json:"webhooks"`
}

// attemptList is the body of GET /v1/webhooks/{webhookId}/attempts.
type attemptList struct {
	Attempts []*tidings.WebhookAttempt `json:"attempts"`
}

// webhooks returns the webhook service, or not_found when the server has
// none.
func (s *Server) webhooks() (tidings.WebhookService, error) {
	if s.Webhooks == nil {
		return nil, tidings.Errorf(tidings.ENotFound, "webhooks are not available on this server")
	}
	return s.Webhooks, nil
}

// webhookChanged tells the dispatcher, if any, that an endpoint changed.
func (s *Server) webhookChanged() {
	if s.WebhooksChanged != nil {
		s.WebhooksChanged()
	}
}

func (s *Server) handleCreateWebhook(w http.ResponseWriter, r *http.Request) error {
	svc, err := s.webhooks()
	if err != nil {
		return err
	}
	var nw tidings.NewWebhook
	if err := s.decodeJSON(w, r, &nw, bodyRequired); err != nil {
		return err
	}
	ep, err := svc.CreateWebhook(r.Context(), nw)
	if err != nil {
		return err
	}
	s.webhookChanged()
	s.writeJSON(w, r, http.StatusCreated, ep)
	return nil
}

func (s *Server) handleListWebhooks(w http.ResponseWriter, r *http.Request) error {
	svc, err := s.webhooks()
	if err != nil {
		return err
	}
	list, err := svc.ListWebhooks(r.Context())
	if err != nil {
		return err
	}
	if list == nil {
		list = []*tidings.WebhookEndpoint{}
	}
	s.writeJSON(w, r, http.StatusOK, webhookList{list})
	return nil
}

func (s *Server) handleGetWebhook(w http.ResponseWriter, r *http.Request) error {
	svc, err := s.webhooks()
	if err != nil {
		return err
	}
	ep, err := svc.FindWebhook(r.Context(), r.PathValue("webhookId"))
	if err != nil {
		return err
	}
	s.writeJSON(w, r, http.StatusOK, ep)
	return nil
}

func (s *Server) handleUpdateWebhook(w http.ResponseWriter, r *http.Request) error {
	svc, err := s.webhooks()
	if err != nil {
		return err
	}
	var upd tidings.WebhookUpdate
	if err := s.decodeJSON(w, r, &upd, bodyRequired); err != nil {
		return err
	}
	ep, err := svc.UpdateWebhook(r.Context(), r.PathValue("webhookId"), upd)
	if err != nil {
		return err
	}
	s.webhookChanged()
	s.writeJSON(w, r, http.StatusOK, ep)
	return nil
}

func (s *Server) handleDeleteWebhook(w http.ResponseWriter, r *http.Request) error {
	svc, err := s.webhooks()
	if err != nil {
		return err
	}
	if err := svc.DeleteWebhook(r.Context(), r.PathValue("webhookId")); err != nil {
		return err
	}
	s.webhookChanged()
	w.WriteHeader(http.StatusNoContent)
	return nil
}

func (s *Server) handleListWebhookAttempts(w http.ResponseWriter, r *http.Request) error {
	svc, err := s.webhooks()
	if err != nil {
		return err
	}
	limit, err := queryInt(r, "limit", 1, tidings.WebhookAttemptsKept)
	if err != nil {
		return err
	}
	list, err := svc.ListWebhookAttempts(r.Context(), r.PathValue("webhookId"), int(limit))
	if err != nil {
		return err
	}
	if list == nil {
		list = []*tidings.WebhookAttempt{}
	}
	s.writeJSON(w, r, http.StatusOK, attemptList{list})
	return nil
}

func (s *Server) handleReplayWebhook(w http.ResponseWriter, r *http.Request) error {
	svc, err := s.webhooks()
	if err != nil {
		return err
	}
	var req tidings.WebhookReplay
	if err := s.decodeJSON(w, r, &req, bodyRequired); err != nil {
		return err
	}
	ep, err := svc.ReplayWebhook(r.Context(), r.PathValue("webhookId"), req)
	if err != nil {
		return err
	}
	s.webhookChanged()
	s.writeJSON(w, r, http.StatusOK, ep)
	return nil
}
