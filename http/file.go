package http

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"net/http"
	"strconv"
	"strings"

	"github.com/tidings/tidings"
)

// handleUploadFile stores the raw request body as a file of the
// conversation. The file's name comes from the name query parameter and
// its type from the Content-Type header.
func (s *Server) handleUploadFile(w http.ResponseWriter, r *http.Request) error {
	name := r.URL.Query().Get("name")
	if name == "" {
		return tidings.Errorf(tidings.EInvalid, "query parameter \"name\" (the file's name) is required")
	}
	contentType, err := fileContentType(r)
	if err != nil {
		return err
	}
	max := s.maxFileBytes()
	if r.ContentLength > max {
		return tidings.Errorf(tidings.ETooLarge, "file is larger than %d bytes", max)
	}

	body := &errReader{r: http.MaxBytesReader(w, r.Body, max)}
	f, err := s.Files.CreateFile(r.Context(), r.PathValue("conversationId"), name, contentType, body)
	// A failure to read the body explains any error of the service.
	if _, ok := errors.AsType[*http.MaxBytesError](body.err); ok {
		return tidings.Errorf(tidings.ETooLarge, "file is larger than %d bytes", max)
	} else if body.err != nil {
		return tidings.Errorf(tidings.EInvalid, "could not read the request body")
	}
	if err != nil {
		return err
	}
	s.writeJSON(w, r, http.StatusCreated, f)
	return nil
}

// fileContentType returns the media type of an upload, from its required
// Content-Type header, in canonical form.
func fileContentType(r *http.Request) (string, error) {
	h := r.Header.Get("Content-Type")
	if h == "" {
		return "", tidings.Errorf(tidings.EUnsupportedType, "Content-Type is required: send the file's media type, e.g. image/png")
	}
	mt, params, err := mime.ParseMediaType(h)
	if err != nil {
		return "", tidings.Errorf(tidings.EUnsupportedType, "Content-Type is not a valid media type")
	}
	ct := mime.FormatMediaType(mt, params)
	if ct == "" {
		return "", tidings.Errorf(tidings.EUnsupportedType, "Content-Type is not a valid media type")
	}
	return ct, nil
}

// errReader remembers the first error other than io.EOF its reader
// returned.
type errReader struct {
	r   io.Reader
	err error
}

func (e *errReader) Read(p []byte) (int, error) {
	n, err := e.r.Read(p)
	if err != nil && err != io.EOF && e.err == nil {
		e.err = err
	}
	return n, err
}

// handleDownloadFile sends the content of a file, always as an attachment
// so that a browser never renders it in the API's origin.
func (s *Server) handleDownloadFile(w http.ResponseWriter, r *http.Request) error {
	f, rc, err := s.Files.OpenFile(r.Context(), r.PathValue("conversationId"), r.PathValue("fileId"))
	if err != nil {
		return err
	}
	defer rc.Close()

	contentType := f.Type
	if contentType == "" {
		contentType = "application/octet-stream"
	}
	h := w.Header()
	h.Set("Content-Type", contentType)
	h.Set("Content-Length", strconv.FormatInt(f.Size, 10))
	h.Set("Content-Disposition", contentDisposition(f.Name))
	h.Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(http.StatusOK)
	if r.Method == http.MethodHead {
		return nil
	}
	if _, err := io.Copy(w, rc); err != nil {
		// Too late for an error response: the client sees a short body.
		s.logger().LogAttrs(r.Context(), slog.LevelWarn, "sending a file",
			append(requestAttrs(r), errAttr(err))...)
	}
	return nil
}

// contentDisposition returns an attachment Content-Disposition for a file
// named name: an ASCII fallback in filename for old clients, and the exact
// name, percent-encoded in UTF-8 (RFC 6266, RFC 8187), in filename*.
func contentDisposition(name string) string {
	if name == "" {
		return "attachment"
	}
	var fallback, encoded strings.Builder
	for _, c := range name {
		if c >= 0x20 && c < 0x7f && c != '"' && c != '\\' {
			fallback.WriteRune(c)
		} else {
			fallback.WriteByte('_')
		}
	}
	for i := 0; i < len(name); i++ {
		if b := name[i]; isAttrChar(b) {
			encoded.WriteByte(b)
		} else {
			fmt.Fprintf(&encoded, "%%%02X", b)
		}
	}
	return `attachment; filename="` + fallback.String() + `"; filename*=UTF-8''` + encoded.String()
}

// isAttrChar reports whether b may appear unencoded in an RFC 8187
// ext-value.
func isAttrChar(b byte) bool {
	switch {
	case 'a' <= b && b <= 'z', 'A' <= b && b <= 'Z', '0' <= b && b <= '9':
		return true
	}
	return strings.IndexByte("!#$&+-.^_`|~", b) >= 0
}
