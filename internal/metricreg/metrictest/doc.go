// Package metrictest is test support for Switchboard's Prometheus metrics:
// it reads the value of one metric, by family name and label pairs, from a
// registry a test handed to the code under test, so that tests can assert
// that bad input was counted or that a gauge went back to zero. It is
// imported by _test.go files only.
package metrictest
