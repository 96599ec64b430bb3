// Package listener prepares the server's TCP listeners: it keeps accepting after
// temporary accept errors (out of file descriptors and the like) with a backoff, and
// serves TLS with a certificate that is reloaded when its files change.
package listener
