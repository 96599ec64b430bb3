// Package metricreg holds what Switchboard's packages share about Prometheus
// metrics: registering a collector so that two instances on one registry
// share it.
package metricreg

import (
	"errors"
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
)

// Register registers c on reg, or returns the identical collector registered
// before (a second instance of a component on the same registry shares its
// metrics). owner prefixes the error.
func Register[C prometheus.Collector](reg prometheus.Registerer, owner string, c C) (C, error) {
	if err := reg.Register(c); err != nil {
		var are prometheus.AlreadyRegisteredError
		if errors.As(err, &are) {
			if prev, ok := are.ExistingCollector.(C); ok {
				return prev, nil
			}
		}
		return c, fmt.Errorf("%s: register metrics: %w", owner, err)
	}
	return c, nil
}
