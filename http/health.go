package http

import (
	"context"
	_ "embed"
	"log/slog"
	"net/http"
	"time"

	"github.com/tidings/tidings"
)

// readyTimeout bounds the Ready check of GET /readyz.
const readyTimeout = 5 * time.Second

// status is the body of GET /healthz and GET /readyz.
type status struct {
	Status string `json:"status"`
}

// handleHealthz answers as long as the process serves HTTP.
func (s *Server) handleHealthz(w http.ResponseWriter, r *http.Request) error {
	s.writeJSON(w, r, http.StatusOK, status{Status: "ok"})
	return nil
}

// handleReadyz answers 200 when Ready succeeds, 503 otherwise.
func (s *Server) handleReadyz(w http.ResponseWriter, r *http.Request) error {
	if s.Ready != nil {
		ctx, cancel := context.WithTimeout(r.Context(), readyTimeout)
		defer cancel()
		if err := s.Ready(ctx); err != nil {
			s.logger().LogAttrs(r.Context(), slog.LevelWarn, "not ready",
				append(requestAttrs(r), errAttr(err))...)
			return tidings.Errorf(tidings.EUnavailable, "not ready")
		}
	}
	s.writeJSON(w, r, http.StatusOK, status{Status: "ok"})
	return nil
}

func (s *Server) handleMetrics(w http.ResponseWriter, r *http.Request) error {
	s.metricsHandler.ServeHTTP(w, r)
	return nil
}

// openAPI is the OpenAPI document of the API.
//
//go:embed openapi.json
var openAPI []byte

func handleOpenAPI(w http.ResponseWriter, r *http.Request) error {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "public, max-age=300")
	_, _ = w.Write(openAPI)
	return nil
}
