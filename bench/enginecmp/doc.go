// Package enginecmp compares storage engines for the history log on the same
// workload: Switchboard's own segment log (internal/history) and bbolt (a
// copy-on-write B+tree, one bucket per group, concurrent appends batched into
// one transaction with DB.Batch). It is a separate module so that bbolt is
// not a dependency of the server. Run: cd bench/enginecmp && go test -bench .
package enginecmp
