// Package admin serves the operational endpoints: Prometheus metrics, an
// admin view of the configuration, and optional pprof profiles.
package admin
