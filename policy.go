package tidings

// The access policy of conversations: who may see, read, send, edit and
// delete messages, add, change and remove participants, join and leave.
// These are pure decisions over what a store has loaded, so that every
// store (SQLite, PostgreSQL) applies the same rules and answers with the
// same error codes and messages. The stores load; the policy decides.
//
// Conventions shared by every function here:
//   - id is the conversation's id, as the caller asked for it.
//   - conv is the conversation as the caller sees it, with conv.Role set to
//     the caller's role ("" when they do not take part in it), or nil when
//     no conversation has that id in the caller's app.
//   - A nil error means allowed.
//   - Checks are made in a fixed order (visibility, participation,
//     deletion, permission, then the target), so that a caller who may not
//     see a conversation learns nothing of what is in it.

// ErrConversationNotFound is the answer for a conversation that does not
// exist, or that the caller may not know exists.
func ErrConversationNotFound(id string) *Error {
	return Errorf(ENotFound, "conversation %q not found", id)
}

// ErrConversationIDNotAvailable answers a create with an id already in use,
// whatever the conversation holding it (public, private or deleted) and
// whether the caller takes part in it or not: it tells that the id is
// taken, which any create with a chosen id must, and nothing else.
func ErrConversationIDNotAvailable(id string) *Error {
	return Errorf(EConflict, "conversation id %q is not available: choose another id, or leave it out to have one generated", id)
}

// ErrNotParticipant is the answer for a target user who does not take
// part in the conversation.
func ErrNotParticipant(convID, userID string) *Error {
	return Errorf(ENotFound, "user %q does not take part in conversation %q", userID, convID)
}

// ErrMessageNotFound is the answer for a message not in the conversation.
func ErrMessageNotFound(convID, msgID string) *Error {
	return Errorf(ENotFound, "message %q not found in conversation %q", msgID, convID)
}

// ErrFileNotFound is the answer for a file not in the conversation.
func ErrFileNotFound(convID, fileID string) *Error {
	return Errorf(ENotFound, "file %q not found in conversation %q", fileID, convID)
}

// errConversationDeleted refuses a change to a deleted conversation.
func errConversationDeleted(id string) *Error {
	return Errorf(EConflict, "conversation %q is deleted", id)
}

// errNeedsAnOwner refuses to leave a conversation without an owner.
func errNeedsAnOwner(id string) *Error {
	return Errorf(EConflict, "conversation %q needs an owner: make another participant owner first", id)
}

// ServerView returns conv as the app's server sees it: with RoleServer as
// the caller's role, for the access policy. It returns nil for nil.
func ServerView(conv *Conversation) *Conversation {
	if conv == nil {
		return nil
	}
	v := *conv
	v.Role, v.ReadSeq, v.UnreadCount = RoleServer, 0, 0
	return &v
}

// ConversationParticipants returns the first participants of a
// conversation the caller creates, as they are added: for a user, the
// creator as owner, first, then the others as listed (the creator listed
// among them is left out: they are the owner whatever the list says); for
// the app's server, exactly the list, with the roles it gives (owners
// included; none is an ownerless conversation, which only the server and
// the participants' roles it grants manage). nc must be validated.
func ConversationParticipants(c Caller, nc NewConversation) []NewParticipant {
	if c.Server {
		return append([]NewParticipant(nil), nc.Participants...)
	}
	all := make([]NewParticipant, 0, len(nc.Participants)+1)
	all = append(all, NewParticipant{UserID: c.UserID, Role: RoleOwner})
	for _, p := range nc.Participants {
		if p.UserID != c.UserID {
			all = append(all, p)
		}
	}
	return all
}

// CanSeeConversation decides whether the caller may see the conversation:
// a participant sees it, deleted or not; anyone else sees it only if it is
// public and not deleted. Otherwise it does not exist for them (ENotFound).
func CanSeeConversation(id string, conv *Conversation) error {
	if conv == nil || (conv.Role == "" && (!conv.IsPublic || conv.DeletedAt != nil)) {
		return ErrConversationNotFound(id)
	}
	return nil
}

// CanReadConversation decides whether the caller may read what is in the
// conversation (its messages and files): participants only, deleted or
// not.
func CanReadConversation(id string, conv *Conversation) error {
	if err := CanSeeConversation(id, conv); err != nil {
		return err
	}
	if conv.Role == "" {
		return Errorf(EForbidden, "you do not take part in conversation %q: join it first", id)
	}
	return nil
}

// CanActInConversation decides whether the caller may act in the
// conversation: they take part in it, their role allows perm ("" checks
// participation only) and, unless allowDeleted, it is not deleted. The
// functions below build on it; use them where one fits.
func CanActInConversation(id string, conv *Conversation, perm Permission, allowDeleted bool) error {
	if err := CanSeeConversation(id, conv); err != nil {
		return err
	}
	if conv.Role == "" {
		return Errorf(EForbidden, "you do not take part in conversation %q", id)
	}
	if conv.DeletedAt != nil && !allowDeleted {
		return errConversationDeleted(id)
	}
	if perm != "" && !conv.Roles.Allows(conv.Role, perm) {
		return Errorf(EForbidden, "your role (%s) does not allow %s in this conversation", conv.Role, perm)
	}
	return nil
}

// CanSendMessage decides whether the caller may send a message to the
// conversation: a participant whose role allows PermSend, in a conversation
// not deleted.
func CanSendMessage(id string, conv *Conversation) error {
	switch {
	case CanSeeConversation(id, conv) != nil:
		return ErrConversationNotFound(id)
	case conv.Role == "":
		return Errorf(EForbidden, "you do not take part in conversation %q: join it first", id)
	case conv.DeletedAt != nil:
		return errConversationDeleted(id)
	case !conv.Roles.Allows(conv.Role, PermSend):
		return Errorf(EForbidden, "your role (%s) does not allow sending in this conversation", conv.Role)
	case conv.MutedByModerator:
		return errMuted(id)
	}
	return nil
}

// errMuted refuses a muted participant's message or upload.
func errMuted(id string) *Error {
	return Errorf(EForbidden, "you are muted in conversation %q: you cannot send until a moderator unmutes you", id)
}

// CanUploadFile decides whether the caller may upload a file to the
// conversation: as for sending (a file is uploaded to be sent).
func CanUploadFile(id string, conv *Conversation) error {
	if err := CanActInConversation(id, conv, PermSend, false); err != nil {
		return err
	}
	if conv.MutedByModerator {
		return errMuted(id)
	}
	return nil
}

// CanMuteParticipant decides whether the caller may mute or unmute userID:
// as for removing them (CanRemoveParticipant), a moderator whose role is
// at least as high as theirs, or the app's server.
func CanMuteParticipant(id string, conv *Conversation, userID string, target *Participant) error {
	if err := CanActInConversation(id, conv, PermRemoveParticipants, false); err != nil {
		return err
	}
	if target == nil {
		return ErrNotParticipant(id, userID)
	}
	if !conv.Role.AtLeast(target.Role) {
		return Errorf(EForbidden, "you (%s) cannot mute a %s", conv.Role, target.Role)
	}
	return nil
}

// CanMarkMessages decides whether the caller may move their delivered and
// read marks: any participant, even of a deleted conversation.
func CanMarkMessages(id string, conv *Conversation) error {
	return CanActInConversation(id, conv, "", true)
}

// CanUpdateConversation decides whether the caller may apply upd: it needs
// PermUpdate in a conversation not deleted, and changing what roles may do
// needs an owner.
func CanUpdateConversation(id string, conv *Conversation, upd ConversationUpdate) error {
	if err := CanActInConversation(id, conv, PermUpdate, false); err != nil {
		return err
	}
	if upd.Roles != nil && !conv.Role.AtLeast(RoleOwner) {
		return Errorf(EForbidden, "only an owner can change what roles may do")
	}
	return nil
}

// CanDeleteConversation decides whether the caller may delete or undelete
// the conversation: it needs PermDelete.
func CanDeleteConversation(id string, conv *Conversation) error {
	return CanActInConversation(id, conv, PermDelete, true)
}

// CanAddParticipant decides whether the caller may add np: it needs
// PermAddParticipants in a conversation not deleted, and cannot grant a
// role above the caller's own. existing is np's participation if they take
// part already (EConflict), nil otherwise. Whether np.UserID names a user
// is for the store to check after this.
func CanAddParticipant(id string, conv *Conversation, np NewParticipant, existing *Participant) error {
	if err := CanActInConversation(id, conv, PermAddParticipants, false); err != nil {
		return err
	}
	if !conv.Role.AtLeast(np.Role) {
		return Errorf(EForbidden, "you (%s) cannot grant the %s role", conv.Role, np.Role)
	}
	if existing != nil {
		return Errorf(EConflict, "user %q already takes part in conversation %q", np.UserID, id)
	}
	return nil
}

// CanUpdateParticipant decides whether the caller may give userID the role
// role. target is userID's participation (nil: they take part in nothing,
// ENotFound). It needs PermUpdate in a conversation not deleted, a role at
// least as high as both the target's and the new one, and, when the target
// is an owner, another owner: owners, called only then, counts the
// conversation's owners. change is false when there is nothing to do (the
// target has that role already), which is not an error.
func CanUpdateParticipant(id string, conv *Conversation, userID string, target *Participant, role Role, owners func() (int, error)) (change bool, err error) {
	if err := CanActInConversation(id, conv, PermUpdate, false); err != nil {
		return false, err
	}
	if target == nil {
		return false, ErrNotParticipant(id, userID)
	}
	if target.Role == role {
		return false, nil
	}
	if !conv.Role.AtLeast(role) || !conv.Role.AtLeast(target.Role) {
		return false, Errorf(EForbidden, "you (%s) cannot change a %s into a %s", conv.Role, target.Role, role)
	}
	if target.Role == RoleOwner {
		if err := keepAnOwner(id, owners); err != nil {
			return false, err
		}
	}
	return true, nil
}

// keepAnOwner refuses when the conversation has only one owner, who is
// about to stop being one.
func keepAnOwner(id string, owners func() (int, error)) error {
	n, err := owners()
	if err != nil {
		return err
	}
	if n <= 1 {
		return errNeedsAnOwner(id)
	}
	return nil
}

// CanRemoveParticipant decides whether the caller may remove userID, who
// is someone else (removing oneself is leaving: CanLeaveConversation).
// target is userID's participation (nil: ENotFound). It needs
// PermRemoveParticipants in a conversation not deleted, and a role at least
// as high as the target's.
func CanRemoveParticipant(id string, conv *Conversation, userID string, target *Participant) error {
	if err := CanActInConversation(id, conv, PermRemoveParticipants, false); err != nil {
		return err
	}
	if target == nil {
		return ErrNotParticipant(id, userID)
	}
	if !conv.Role.AtLeast(target.Role) {
		return Errorf(EForbidden, "you (%s) cannot remove a %s", conv.Role, target.Role)
	}
	return nil
}

// CanJoinConversation decides whether the caller may join the conversation
// as a member: public and not deleted. join is false when the caller takes
// part already: joining again changes nothing, which is not an error.
func CanJoinConversation(id string, conv *Conversation) (join bool, err error) {
	switch {
	case CanSeeConversation(id, conv) != nil:
		return false, ErrConversationNotFound(id)
	case conv.Role != "":
		return false, nil
	case conv.DeletedAt != nil:
		return false, errConversationDeleted(id)
	}
	return true, nil
}

// CanLeaveConversation decides whether the caller may leave the
// conversation (deleted or not): the last owner may not while others take
// part. owners, called only for an owner with others in the conversation,
// counts the conversation's owners.
func CanLeaveConversation(id string, conv *Conversation, owners func() (int, error)) error {
	if err := CanActInConversation(id, conv, "", true); err != nil {
		return err
	}
	if conv.Role == RoleOwner && conv.ParticipantCount > 1 {
		return keepAnOwner(id, owners)
	}
	return nil
}

// CanEditMessage decides whether the caller (user callerID) may edit the
// message msgID; msg is that message (nil: ENotFound). Only its sender
// may, in a conversation they still take part in and not deleted, and not
// once the message is deleted; and the app's server (RoleServer) may edit
// any message (moderation, its own system messages).
func CanEditMessage(id string, conv *Conversation, callerID, msgID string, msg *Message) error {
	if err := CanActInConversation(id, conv, "", false); err != nil {
		return err
	}
	switch {
	case msg == nil:
		return ErrMessageNotFound(id, msgID)
	case msg.Sender.ID != callerID && conv.Role != RoleServer:
		return Errorf(EForbidden, "only the sender can edit a message")
	case msg.DeletedAt != nil:
		return Errorf(EConflict, "message %q is deleted", msgID)
	}
	return nil
}

// CanDeleteMessage decides whether the caller (user callerID) may delete
// the message msgID; msg is that message (nil: ENotFound). Its sender may,
// and so may a moderator (a role allowed PermRemoveParticipants), in a
// conversation not deleted. del is false when the message is deleted
// already: deleting again changes nothing, which is not an error.
func CanDeleteMessage(id string, conv *Conversation, callerID, msgID string, msg *Message) (del bool, err error) {
	if err := CanActInConversation(id, conv, "", false); err != nil {
		return false, err
	}
	switch {
	case msg == nil:
		return false, ErrMessageNotFound(id, msgID)
	case msg.Sender.ID != callerID && !conv.Roles.Allows(conv.Role, PermRemoveParticipants):
		return false, Errorf(EForbidden, "only the sender or a moderator can delete a message")
	case msg.DeletedAt != nil:
		return false, nil
	}
	return true, nil
}
