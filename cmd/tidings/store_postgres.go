package main

import "errors"

// errNoPostgres is returned for a PostgreSQL --store until package
// postgres implements the services (issue #11).
var errNoPostgres = errors.New("this build of tidings cannot use PostgreSQL yet (issue #11): leave --store empty for SQLite in --data")

// postgresBuilt says whether openPostgres can open a store.
const postgresBuilt = false

// openPostgres opens the PostgreSQL database at dsn.
func openPostgres(dsn string, opts storeOptions) (*stores, error) {
	return nil, errNoPostgres
}
