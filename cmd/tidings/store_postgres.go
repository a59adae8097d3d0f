package main

import (
	"github.com/tidings/tidings/postgres"
)

// postgresBuilt says whether openPostgres can open a store.
const postgresBuilt = true

// openPostgres opens the PostgreSQL database at dsn, creating or
// migrating its tables.
func openPostgres(dsn string, opts storeOptions) (*stores, error) {
	db := postgres.NewDB(dsn)
	db.Logger = opts.Logger
	if opts.Publisher != nil {
		db.Publisher = opts.Publisher // before Open: it starts the publisher
	}
	if err := db.Open(); err != nil {
		return nil, err
	}
	users := postgres.NewUserService(db)
	eventLog := postgres.NewEventLog(db)
	webhooks := postgres.NewWebhookService(db)
	pushes := postgres.NewPushService(db)
	beforeSend := postgres.NewBeforeSendService(db)
	s := &stores{
		BeforeSend:      beforeSend,
		BeforeSendStore: beforeSend,
		MaxMessageBytes: opts.MaxMessageBytes,
		Apps:            postgres.NewAppService(db),
		Users:           users,
		Conversations:   postgres.NewConversationService(db),
		Messages:        postgres.NewMessageService(db, opts.MaxMessageBytes),
		EventLog:        eventLog,
		Webhooks:        webhooks,
		WebhookStore:    webhooks,
		Push:            pushes,
		PushStore:       pushes,
		LastSeen:        users,
		Tail:            eventLog,
		Where:           redactURL(dsn),
		ping:            db.Ping,
		close:           db.Close,
		prune:           eventLog.Prune,
	}
	if opts.Blobs != nil {
		files := postgres.NewFileService(db, opts.Blobs, opts.MaxFileBytes)
		files.UserQuota, files.UserQuotaWindow, files.AppQuota = opts.UserQuota, opts.UserQuotaWindow, opts.AppQuota
		s.Files, s.removeUnattached = files, files.RemoveUnattached
	}
	return s, nil
}
