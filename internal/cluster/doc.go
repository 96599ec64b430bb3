// Package cluster carries core operations between nodes: Local hands them
// straight back to the one node of a single-process server.
package cluster
