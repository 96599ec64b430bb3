//go:build !unix

package admission

func openFileLimit() uint64 { return 0 }
