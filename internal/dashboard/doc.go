// Package dashboard serves the live dashboard at /dashboard on the main
// listener: a login with the access key (or dashboard.secret) that sets a
// signed, expiring session cookie; JSON views of the node, the cluster, the
// hubs, rates, history, event handlers and connectors; a live trace of
// connections, messages and handler calls (Tracer, which costs one atomic
// load per event while nobody watches); and the publish console, token tool
// and connection inspector. Its page is plain HTML, CSS and JavaScript
// embedded in the binary.
package dashboard
