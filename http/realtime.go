package http

import (
	"context"
	"net/http"
	"time"

	"github.com/tidings/tidings"
	"github.com/tidings/tidings/protocol"
	"github.com/tidings/tidings/realtime"
)

// Poller is the polling transport of realtime delivery (realtime.Node).
type Poller interface {
	Poll(ctx context.Context, caller tidings.Caller, req realtime.PollRequest) (*realtime.PollResult, error)
	Ack(ctx context.Context, caller tidings.Caller, device, ref string) error
	// SetTyping and Presence are the socket's typing.start, typing.stop
	// and presence.get, for clients without a WebSocket.
	SetTyping(ctx context.Context, caller tidings.Caller, conversationID string, on bool) error
	Presence(ctx context.Context, caller tidings.Caller, conversationID string) (protocol.PresenceResult, error)
}

// maxPollWait bounds how long one poll may wait.
const maxPollWait = 60 * time.Second

// handleRealtime upgrades to a WebSocket connection (docs/protocol.md).
// The connection authenticates in its first command, never in the URL.
func (s *Server) handleRealtime(w http.ResponseWriter, r *http.Request) error {
	if s.Realtime == nil {
		return tidings.Errorf(tidings.ENotFound, "realtime delivery is not enabled on this server")
	}
	// The WebSocket library hijacks the connection: hand it the writer of
	// net/http itself, not the middleware's wrapper.
	for {
		if _, ok := w.(http.Hijacker); ok {
			break
		}
		u, ok := w.(interface{ Unwrap() http.ResponseWriter })
		if !ok {
			break
		}
		w = u.Unwrap()
	}
	s.Realtime.ServeHTTP(w, r)
	return nil
}

func (s *Server) handlePoll(w http.ResponseWriter, r *http.Request) error {
	if s.Poller == nil {
		return tidings.Errorf(tidings.ENotFound, "realtime delivery is not enabled on this server")
	}
	wait, err := queryInt(r, "wait", 0, int64(maxPollWait/time.Second))
	if err != nil {
		return err
	}
	// A poll must answer before the server's write timeout cuts it off.
	if wt := s.WriteTimeout; wt > 0 && time.Duration(wait)*time.Second > wt-5*time.Second {
		wait = int64(max(0, (wt-5*time.Second)/time.Second))
	}
	limit, err := queryInt(r, "limit", 1, 1000)
	if err != nil {
		return err
	}
	caller, _ := tidings.CallerFromContext(r.Context())
	q := r.URL.Query()
	res, err := s.Poller.Poll(r.Context(), caller, realtime.PollRequest{
		Device: q.Get("device"), After: q.Get("after"), Wait: time.Duration(wait) * time.Second, Limit: int(limit),
	})
	if err != nil {
		return err
	}
	s.writeJSON(w, r, http.StatusOK, res)
	return nil
}

// replyRequest acknowledges the updates up to Ref for a device.
type replyRequest struct {
	Ref    string `json:"ref"`
	Device string `json:"device"`
}

func (s *Server) handleReply(w http.ResponseWriter, r *http.Request) error {
	if s.Poller == nil {
		return tidings.Errorf(tidings.ENotFound, "realtime delivery is not enabled on this server")
	}
	var req replyRequest
	if err := s.decodeJSON(w, r, &req, false); err != nil {
		return err
	}
	caller, _ := tidings.CallerFromContext(r.Context())
	if err := s.Poller.Ack(r.Context(), caller, req.Device, req.Ref); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// typingRequest turns the caller's typing indicator on or off.
type typingRequest struct {
	Typing *bool `json:"typing"`
}

func (s *Server) handleTyping(w http.ResponseWriter, r *http.Request) error {
	if s.Poller == nil {
		return tidings.Errorf(tidings.ENotFound, "realtime delivery is not enabled on this server")
	}
	var req typingRequest
	if err := s.decodeJSON(w, r, &req, false); err != nil {
		return err
	}
	if req.Typing == nil {
		return tidings.Errorf(tidings.EInvalid, "typing is required: true while the user types, false when they stop")
	}
	caller, _ := tidings.CallerFromContext(r.Context())
	if err := s.Poller.SetTyping(r.Context(), caller, r.PathValue("conversationId"), *req.Typing); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

func (s *Server) handlePresence(w http.ResponseWriter, r *http.Request) error {
	if s.Poller == nil {
		return tidings.Errorf(tidings.ENotFound, "realtime delivery is not enabled on this server")
	}
	caller, _ := tidings.CallerFromContext(r.Context())
	res, err := s.Poller.Presence(r.Context(), caller, r.PathValue("conversationId"))
	if err != nil {
		return err
	}
	s.writeJSON(w, r, http.StatusOK, res)
	return nil
}
