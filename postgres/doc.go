// Package postgres implements the Tidings services on PostgreSQL, for
// clusters of several nodes sharing one database (docs/cluster.md).
//
// DB holds a pgx pool. Open applies the migrations embedded from
// migrations/ (once, under an advisory lock, however many nodes start
// together). Writes run in transactions (DB.update) that are run again
// once if cut before their commit; an unreachable server is EUnavailable,
// and calls work again by themselves once it is back. Sessions set
// idle_in_transaction_session_timeout to 10 s unless the DSN sets it: a
// transaction left open holds every node's horizon.
//
// Events get their positions (refs) from the sequence tidings_event_seq,
// drawn in the transaction that stores them, after that transaction has
// its id (events.go). Positions are final once no transaction can still
// commit one below them, which PostgreSQL's snapshots tell (the horizon,
// see finality.advance): EventLog reads and LogTail.Final return final
// positions only, and the publisher (DB.Publisher) hands the final events
// to one node's realtime hub in position order.
//
// The services: AppService, UserService (with tidings.LastSeenStore),
// ConversationService, MessageService, FileService (contents in a
// tidings.BlobStore), EventLog and LogTail, and WebhookService (webhook
// endpoints and the dispatcher's tidings.WebhookStore, webhook.go). Every change of a
// conversation queues on the conversation's advisory lock before its
// transaction has an id, then locks the conversation's row, then draws
// positions (conversation.go, message.go): messages are numbered without
// gaps and their events' positions follow their numbers, whatever the
// node. Sends are committed in groups: the sends queued on a node while
// a batch commits go together in the next transaction, and each returns
// once its batch has committed (sendbatch.go); other writes wait for the
// sends queued before them. All pass the store conformance suite
// (storetest).
//
// Tests and benchmarks run against the PostgreSQL named by
// TIDINGS_TEST_POSTGRES (default postgres://postgres@127.0.0.1:5432/test),
// each in a database of its own that they drop when done, and are skipped
// when it cannot be reached (they fail instead with
// TIDINGS_REQUIRE_SERVICES=1). positions_bench_test.go holds the
// measurements that chose how positions are assigned; send_bench_test.go
// measures durable sends through MessageService.
package postgres
