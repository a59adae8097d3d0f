package http

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"mime/multipart"
	"net/http"
	"strconv"
	"strings"

	"github.com/tidings/tidings"
)

// handleUploadFile stores a file of the conversation, sent either as the
// raw request body (its name in the name query parameter, its type in the
// Content-Type header) or as the one file part of a multipart/form-data
// body, as a browser's FormData or curl -F send it.
func (s *Server) handleUploadFile(w http.ResponseWriter, r *http.Request) error {
	mt, params, _ := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if mt == "multipart/form-data" {
		return s.uploadMultipart(w, r, params["boundary"])
	}
	name := r.URL.Query().Get("name")
	if name == "" {
		return tidings.Errorf(tidings.EInvalid, "query parameter \"name\" (the file's name) is required")
	}
	contentType, err := fileContentType(r.Header.Get("Content-Type"), "Content-Type")
	if err != nil {
		return err
	}
	max := s.maxFileBytes()
	if r.ContentLength > max {
		return tidings.Errorf(tidings.ETooLarge, "file is larger than %d bytes", max)
	}
	body := &errReader{r: http.MaxBytesReader(w, r.Body, max)}
	f, err := s.Files.CreateFile(r.Context(), r.PathValue("conversationId"), name, contentType, body)
	if err := s.uploadReadError(body.err, max); err != nil {
		return err // a failure to read the body explains any error of the service
	}
	if err != nil {
		return err
	}
	s.writeJSON(w, r, http.StatusCreated, f)
	return nil
}

// multipartSlack is what a multipart upload may hold besides the file's
// content: the boundaries, the parts' headers and any small form field.
const multipartSlack = 64 << 10

// errSecondFile is the error of a multipart body holding more than one file.
var errSecondFile = errors.New("a second file part")

// uploadMultipart stores the one file part (the part with a filename) of a
// multipart/form-data body. The part is streamed to the store as it comes;
// other fields are read and ignored. The file's name is the name query
// parameter if given, else the part's filename; its type, the part's
// Content-Type.
func (s *Server) uploadMultipart(w http.ResponseWriter, r *http.Request, boundary string) error {
	if boundary == "" {
		return tidings.Errorf(tidings.EInvalid, "a multipart/form-data upload needs a boundary in its Content-Type")
	}
	max := s.maxFileBytes()
	if r.ContentLength > max+multipartSlack {
		return tidings.Errorf(tidings.ETooLarge, "file is larger than %d bytes", max)
	}
	body := &errReader{r: http.MaxBytesReader(w, r.Body, max+multipartSlack)}
	mr := multipart.NewReader(body, boundary)
	var part *multipart.Part
	for {
		p, err := mr.NextPart()
		if err == io.EOF {
			return tidings.Errorf(tidings.EInvalid, "the multipart/form-data body has no file part: send the file as a part with a filename")
		} else if err != nil {
			return s.multipartError(body.err, err, max)
		}
		if p.FileName() != "" {
			part = p
			break
		}
		if _, err := io.Copy(io.Discard, p); err != nil {
			return s.multipartError(body.err, err, max)
		}
	}
	name := r.URL.Query().Get("name")
	if name == "" {
		name = part.FileName()
	}
	contentType, err := fileContentType(part.Header.Get("Content-Type"), "the file part's Content-Type")
	if err != nil {
		return err
	}
	file := &errReader{r: &lastPart{part: part, mr: mr}}
	f, err := s.Files.CreateFile(r.Context(), r.PathValue("conversationId"), name, contentType, file)
	if file.err != nil {
		return s.multipartError(body.err, file.err, max)
	}
	if err != nil {
		return err
	}
	s.writeJSON(w, r, http.StatusCreated, f)
	return nil
}

// lastPart reads a file part, then checks that no other file follows it:
// it ends with errSecondFile if one does, before the store keeps anything.
type lastPart struct {
	part *multipart.Part
	mr   *multipart.Reader
}

func (l *lastPart) Read(p []byte) (int, error) {
	n, err := l.part.Read(p)
	if err != io.EOF {
		return n, err
	}
	for {
		next, err := l.mr.NextPart()
		if err == io.EOF {
			return n, io.EOF
		} else if err != nil {
			return n, err
		}
		if next.FileName() != "" {
			return n, errSecondFile
		}
		if _, err := io.Copy(io.Discard, next); err != nil {
			return n, err
		}
	}
}

// multipartError is the error for a failure err to read a multipart upload
// whose body read ended with bodyErr.
func (s *Server) multipartError(bodyErr, err error, max int64) error {
	if err := s.uploadReadError(bodyErr, max); err != nil {
		return err
	}
	if errors.Is(err, errSecondFile) {
		return tidings.Errorf(tidings.EInvalid, "the multipart/form-data body has more than one file part: upload one file per request")
	}
	return tidings.Errorf(tidings.EInvalid, "the multipart/form-data body is not valid")
}

// uploadReadError is the error for a failure to read an upload's body, or
// nil if there was none.
func (s *Server) uploadReadError(err error, max int64) error {
	if err == nil {
		return nil
	}
	if errors.Is(err, errBodyTimeout) {
		return s.bodyTimeoutError()
	}
	if _, ok := errors.AsType[*http.MaxBytesError](err); ok {
		return tidings.Errorf(tidings.ETooLarge, "file is larger than %d bytes", max)
	}
	return tidings.Errorf(tidings.EInvalid, "could not read the request body")
}

// fileContentType returns the media type of an upload in canonical form,
// from header (the request's Content-Type, or a file part's). A file sent
// without one, or as application/x-www-form-urlencoded (what curl
// --data-binary says of any file), is application/octet-stream.
func fileContentType(header, field string) (string, error) {
	if strings.TrimSpace(header) == "" {
		return "application/octet-stream", nil
	}
	if mt, _, err := mime.ParseMediaType(header); err == nil && mt == "application/x-www-form-urlencoded" {
		return "application/octet-stream", nil
	}
	return tidings.NormalizeMediaType(field, header)
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
