package tidings

import (
	"bytes"
	"encoding/json"
	"fmt"
	"mime"
	"net/url"
	"slices"
	"strings"
	"unicode/utf8"
)

// The validation rules of the domain, shared by every storage
// implementation. Each returns an *Error with code EInvalid (or ETooLarge)
// naming the field at fault.

func invalid(format string, args ...any) error { return Errorf(EInvalid, format, args...) }

func validText(field, s string, max int) error {
	if !utf8.ValidString(s) {
		return invalid("%s is not valid UTF-8", field)
	}
	if len(s) > max {
		return invalid("%s is longer than %d bytes", field, max)
	}
	return nil
}

func validURL(field, s string) error {
	if s == "" {
		return nil
	}
	if err := validText(field, s, MaxURLLen); err != nil {
		return err
	}
	u, err := url.Parse(s)
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
		return invalid("%s must be an absolute http or https URL", field)
	}
	return nil
}

func validIdentifier(id *Identifier) error {
	if id == nil {
		return nil
	}
	if strings.TrimSpace(id.Value) == "" || strings.TrimSpace(id.Kind) == "" {
		return invalid("identifier needs both value and kind")
	}
	if err := validText("identifier.value", id.Value, 320); err != nil {
		return err
	}
	return validText("identifier.kind", id.Kind, 50)
}

// NormalizeMetadata checks that m is absent, null or a JSON object of at
// most max bytes, and returns it compacted (nil for absent or null).
func NormalizeMetadata(field string, m json.RawMessage, max int) (json.RawMessage, error) {
	t := bytes.TrimSpace(m)
	if len(t) == 0 || bytes.Equal(t, []byte("null")) {
		return nil, nil
	}
	if t[0] != '{' || !json.Valid(t) {
		return nil, invalid("%s must be a JSON object", field)
	}
	// json.Valid lets invalid UTF-8 through in strings: stored as it is, it
	// would come back in answers and events that are not valid JSON text.
	if !utf8.Valid(t) {
		return nil, invalid("%s is not valid UTF-8", field)
	}
	var buf bytes.Buffer
	if err := json.Compact(&buf, t); err != nil {
		return nil, invalid("%s must be a JSON object", field)
	}
	if buf.Len() > max {
		return nil, Errorf(ETooLarge, "%s is larger than %d bytes", field, max)
	}
	if jsonDepth(buf.Bytes()) > MaxMetadataDepth {
		return nil, invalid("%s is nested more than %d levels deep", field, MaxMetadataDepth)
	}
	return buf.Bytes(), nil
}

// MaxMetadataDepth is how deeply objects and arrays may nest in metadata
// (the outer object is level 1): clients with recursive parsers must be
// able to read every message they are sent.
const MaxMetadataDepth = 32

// jsonDepth returns the deepest nesting of objects and arrays in the valid
// JSON text b.
func jsonDepth(b []byte) int {
	depth, deepest, inString := 0, 0, false
	for i := 0; i < len(b); i++ {
		c := b[i]
		switch {
		case inString:
			if c == '\\' {
				i++ // skip the escaped character
			} else if c == '"' {
				inString = false
			}
		case c == '"':
			inString = true
		case c == '{' || c == '[':
			depth++
			deepest = max(deepest, depth)
		case c == '}' || c == ']':
			depth--
		}
	}
	return deepest
}

// MaxMediaTypeLen bounds a content type: a part's type and an uploaded
// file's.
const MaxMediaTypeLen = 255

// NormalizeMediaType checks that s is a media type (type/subtype, with
// optional parameters) of at most MaxMediaTypeLen bytes, and returns it in
// canonical form. A type that is too long is EInvalid; one that is not a
// media type is EUnsupportedType.
func NormalizeMediaType(field, s string) (string, error) {
	if len(s) > MaxMediaTypeLen {
		return "", invalid("%s is longer than %d bytes", field, MaxMediaTypeLen)
	}
	mt, params, err := mime.ParseMediaType(s)
	if err != nil || !strings.Contains(mt, "/") {
		return "", Errorf(EUnsupportedType, "%s is not a valid media type (type/subtype, such as image/png)", field)
	}
	ct := mime.FormatMediaType(mt, params)
	if ct == "" || len(ct) > MaxMediaTypeLen {
		return "", Errorf(EUnsupportedType, "%s is not a valid media type (type/subtype, such as image/png)", field)
	}
	return ct, nil
}

// Validate checks a user to be created and fills defaults.
func (u *User) Validate() error {
	if !ValidID(u.ID) {
		return invalid("user id %q is not valid: use 1 to 128 letters, digits and . _ @ : - (not starting with punctuation)", u.ID)
	}
	u.DisplayName = strings.TrimSpace(u.DisplayName)
	if u.DisplayName == "" {
		u.DisplayName = u.ID
	}
	if err := validText("displayName", u.DisplayName, MaxDisplayNameLen); err != nil {
		return err
	}
	if err := validURL("avatarUrl", u.AvatarURL); err != nil {
		return err
	}
	if err := validIdentifier(u.Identifier); err != nil {
		return err
	}
	m, err := NormalizeMetadata("metadata", u.Metadata, MaxMetadataBytes)
	u.Metadata = m
	return err
}

// Apply checks upd and applies it to a.
func (upd AppUpdate) Apply(a *App) error {
	if upd.Name != nil {
		name := strings.TrimSpace(*upd.Name)
		if name == "" {
			return invalid("name cannot be empty")
		}
		if err := validText("name", name, MaxNameLen); err != nil {
			return err
		}
		a.Name = name
	}
	if upd.UserEditableFields != nil {
		fields := []string{}
		for _, f := range *upd.UserEditableFields {
			if !slices.Contains(ProfileFields, f) {
				return invalid("userEditableFields: %q is not a profile field: use %s", f, strings.Join(ProfileFields, ", "))
			}
			if !slices.Contains(fields, f) {
				fields = append(fields, f)
			}
		}
		a.UserEditableFields = fields
	}
	return nil
}

// Apply checks upd and applies it to u.
func (upd UserUpdate) Apply(u *User) error {
	if upd.DisplayName != nil {
		name := strings.TrimSpace(*upd.DisplayName)
		if name == "" {
			return invalid("displayName cannot be empty")
		}
		if err := validText("displayName", name, MaxDisplayNameLen); err != nil {
			return err
		}
		u.DisplayName = name
	}
	if upd.AvatarURL != nil {
		if err := validURL("avatarUrl", *upd.AvatarURL); err != nil {
			return err
		}
		u.AvatarURL = *upd.AvatarURL
	}
	if upd.Identifier != nil {
		if *upd.Identifier == (Identifier{}) {
			u.Identifier = nil // {} clears the identifier
		} else {
			if err := validIdentifier(upd.Identifier); err != nil {
				return err
			}
			id := *upd.Identifier
			u.Identifier = &id
		}
	}
	if upd.Metadata != nil {
		m, err := NormalizeMetadata("metadata", *upd.Metadata, MaxMetadataBytes)
		if err != nil {
			return err
		}
		u.Metadata = m
	}
	if upd.PresenceHidden != nil {
		u.PresenceHidden = *upd.PresenceHidden
	}
	return nil
}

func validRole(field string, r Role) error {
	if !r.Valid() {
		return invalid("%s %q is not a role: use owner, admin or member", field, r)
	}
	return nil
}

// Validate checks a conversation to be created and fills defaults.
func (nc *NewConversation) Validate() error {
	if nc.ID == "" {
		nc.ID = NewID()
	} else if !ValidID(nc.ID) {
		return invalid("conversation id %q is not valid: use 1 to 128 letters, digits and . _ @ : -", nc.ID)
	}
	nc.Name = strings.TrimSpace(nc.Name)
	if err := validText("name", nc.Name, MaxNameLen); err != nil {
		return err
	}
	if err := validText("description", nc.Description, MaxDescriptionLen); err != nil {
		return err
	}
	if nc.Roles == nil {
		r := DefaultRoles()
		nc.Roles = &r
	}
	if len(nc.Participants) > MaxInitialParticipants {
		return invalid("at most %d participants can be given at creation", MaxInitialParticipants)
	}
	seen := make(map[string]bool, len(nc.Participants))
	for i := range nc.Participants {
		p := &nc.Participants[i]
		if !ValidID(p.UserID) {
			return invalid("participants[%d].userId %q is not a valid user id", i, p.UserID)
		}
		if p.Role == "" {
			p.Role = RoleMember
		}
		if err := validRole(fmt.Sprintf("participants[%d].role", i), p.Role); err != nil {
			return err
		}
		if seen[p.UserID] {
			return invalid("participant %q is listed twice", p.UserID)
		}
		seen[p.UserID] = true
	}
	return nil
}

// Apply checks upd and applies it to c.
func (upd ConversationUpdate) Apply(c *Conversation) error {
	if upd.Name != nil {
		name := strings.TrimSpace(*upd.Name)
		if err := validText("name", name, MaxNameLen); err != nil {
			return err
		}
		c.Name = name
	}
	if upd.Description != nil {
		if err := validText("description", *upd.Description, MaxDescriptionLen); err != nil {
			return err
		}
		c.Description = *upd.Description
	}
	if upd.IsPublic != nil {
		c.IsPublic = *upd.IsPublic
	}
	if upd.Roles != nil {
		c.Roles = *upd.Roles
	}
	return nil
}

// Validate checks a participant to add and defaults its role.
func (p *NewParticipant) Validate() error {
	if !ValidID(p.UserID) {
		return invalid("userId %q is not a valid user id", p.UserID)
	}
	if p.Role == "" {
		p.Role = RoleMember
	}
	return validRole("role", p.Role)
}

// ValidateParts checks message parts.
func ValidateParts(parts []Part) error {
	if len(parts) == 0 {
		return invalid("a message needs at least one part")
	}
	if len(parts) > MaxParts {
		return invalid("a message has at most %d parts", MaxParts)
	}
	for i, p := range parts {
		if p.Type == "" {
			return invalid("parts[%d].type is required (a content type such as text/plain)", i)
		}
		if err := validText("parts[].type", p.Type, MaxMediaTypeLen); err != nil {
			return err
		}
		if strings.ContainsAny(p.Type, " \t\r\n") || !strings.Contains(p.Type, "/") {
			return invalid("parts[%d].type %q is not a content type (type/subtype)", i, p.Type)
		}
		if err := validText("parts[].name", p.Name, 255); err != nil {
			return err
		}
		if p.FileID != "" && p.Data != "" {
			return invalid("parts[%d] has both data and fileId: give one", i)
		}
		if p.FileID == "" && p.Data == "" {
			return invalid("parts[%d] is empty: give its data, or the fileId of an uploaded file", i)
		}
		if p.Size < 0 {
			return invalid("parts[%d].size cannot be negative", i)
		}
		if !utf8.ValidString(p.Data) {
			return invalid("parts[%d].data is not valid UTF-8 (encode binary content, e.g. base64)", i)
		}
	}
	return nil
}

// Validate checks a new message; maxBytes bounds its encoded size.
func (m *NewMessage) Validate(maxBytes int) error {
	if m.ClientID != "" && !ValidID(m.ClientID) {
		return invalid("clientId %q is not valid: use 1 to 128 letters, digits and . _ @ : -", m.ClientID)
	}
	if err := ValidateParts(m.Parts); err != nil {
		return err
	}
	if err := validText("alert", m.Alert, MaxAlertLen); err != nil {
		return err
	}
	meta, err := NormalizeMetadata("metadata", m.Metadata, maxBytes)
	if err != nil {
		return err
	}
	m.Metadata = meta
	return checkSize(m.Parts, meta, m.Alert, maxBytes)
}

// Validate checks an edit; maxBytes bounds the edited message's size.
func (e *MessageEdit) Validate(maxBytes int) error {
	if err := ValidateParts(e.Parts); err != nil {
		return err
	}
	var meta json.RawMessage
	if e.Metadata != nil {
		m, err := NormalizeMetadata("metadata", *e.Metadata, maxBytes)
		if err != nil {
			return err
		}
		e.Metadata = &m
		meta = m
	}
	return checkSize(e.Parts, meta, "", maxBytes)
}

func checkSize(parts []Part, meta json.RawMessage, alert string, maxBytes int) error {
	n := len(meta) + len(alert)
	for _, p := range parts {
		n += len(p.Type) + len(p.Name) + len(p.Data) + len(p.FileID)
	}
	if n > maxBytes {
		return Errorf(ETooLarge, "the message is %d bytes, more than the limit of %d", n, maxBytes)
	}
	return nil
}
