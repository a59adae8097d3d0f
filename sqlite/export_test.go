package sqlite

// SetBeforePruneChunk has Prune call f before each of its writes.
func SetBeforePruneChunk(l *EventLog, f func()) { l.beforeChunk = f }
