//go:build !race

package tidings

const raceEnabled = false
