package http

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"mime"
	"net/http"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/tidings/tidings"
)

// bodyRequired and bodyOptional tell decodeJSON whether an empty body is
// an error or means "all defaults".
const (
	bodyRequired = false
	bodyOptional = true
)

// decodeJSON decodes the JSON body of r into v, strictly: the body must be
// at most MaxBodyBytes (else too_large), sent as application/json (else
// unsupported_media_type), be valid UTF-8 and hold exactly one JSON value,
// with no field v does not have and every field of the right type (else
// invalid_json, with a message naming the field). An empty body is
// invalid_json unless optional, in which case v is left as it is.
func (s *Server) decodeJSON(w http.ResponseWriter, r *http.Request, v any, optional bool) error {
	max := s.maxBodyBytes()
	if r.ContentLength > max {
		return tidings.Errorf(tidings.ETooLarge, "request body is larger than %d bytes", max)
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, max))
	if errors.Is(err, errBodyTimeout) {
		return s.bodyTimeoutError()
	} else if err != nil {
		return bodyReadError(err, max)
	}
	if len(bytes.TrimSpace(body)) == 0 {
		if optional {
			return nil
		}
		return tidings.Errorf(tidings.EInvalidJSON, "request body is empty; a JSON object is expected")
	}
	if err := requireJSONContentType(r); err != nil {
		return err
	}
	// JSON is UTF-8 (RFC 8259). encoding/json would turn invalid bytes in
	// strings into U+FFFD silently, and pass them through as they are in a
	// json.RawMessage (metadata), to be stored and sent back in answers
	// and events that are not valid JSON text.
	if !utf8.Valid(body) {
		return tidings.Errorf(tidings.EInvalidJSON, "request body is not valid UTF-8")
	}

	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return tidings.JSONError("request body", err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return tidings.Errorf(tidings.EInvalidJSON, "request body must hold a single JSON value, with nothing after it")
	}
	return nil
}

// bodyReadError is the error for a failure to read a request body of at
// most max bytes.
func bodyReadError(err error, max int64) error {
	if _, ok := errors.AsType[*http.MaxBytesError](err); ok {
		return tidings.Errorf(tidings.ETooLarge, "request body is larger than %d bytes", max)
	}
	return tidings.Errorf(tidings.EInvalid, "could not read the request body")
}

// requireJSONContentType checks that r's body is declared as JSON.
func requireJSONContentType(r *http.Request) error {
	mt, params, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if err != nil || mt != "application/json" {
		return tidings.Errorf(tidings.EUnsupportedType, "Content-Type must be application/json")
	}
	if cs, ok := params["charset"]; ok && !strings.EqualFold(cs, "utf-8") {
		return tidings.Errorf(tidings.EUnsupportedType, "JSON must be encoded in UTF-8")
	}
	return nil
}

// queryInt returns the integer query parameter name of r, between min and
// max, or 0 if it is absent.
func queryInt(r *http.Request, name string, min, max int64) (int64, error) {
	n, err := queryOptionalInt(r, name, min, max)
	if n == nil {
		return 0, err
	}
	return *n, nil
}

// queryOptionalInt returns the integer query parameter name of r, between
// min and max, or nil if it is absent.
func queryOptionalInt(r *http.Request, name string, min, max int64) (*int64, error) {
	s := r.URL.Query().Get(name)
	if s == "" {
		return nil, nil
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n < min || n > max {
		return nil, tidings.Errorf(tidings.EInvalid, "query parameter %q must be an integer from %d to %d", name, min, max)
	}
	return &n, nil
}

// Page sizes: every list takes a limit from 1 to maxPageSize, and returns
// defaultPageSize items when it is absent.
const (
	defaultPageSize = 50
	maxPageSize     = 200
)

// queryLimit returns the limit query parameter of r, or defaultPageSize.
func queryLimit(r *http.Request) (int, error) {
	n, err := queryInt(r, "limit", 1, maxPageSize)
	if err != nil || n == 0 {
		return defaultPageSize, err
	}
	return int(n), nil
}

// queryBool returns the boolean query parameter name of r ("true" or
// "false"), or false if it is absent.
func queryBool(r *http.Request, name string) (bool, error) {
	s := r.URL.Query().Get(name)
	if s == "" {
		return false, nil
	}
	b, err := strconv.ParseBool(s)
	if err != nil {
		return false, tidings.Errorf(tidings.EInvalid, "query parameter %q must be true or false", name)
	}
	return b, nil
}
