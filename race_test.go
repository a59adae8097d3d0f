//go:build race

package tidings

// raceEnabled: the race detector makes sync.Pool drop items at random,
// so what encoding/json allocates varies from run to run.
const raceEnabled = true
