//go:build race

package ws_test

// raceEnabled: the race detector makes stack frames larger.
const raceEnabled = true
