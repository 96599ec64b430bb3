// Package config holds Switchboard's one Config struct: its defaults, its
// validation, and its loading from a YAML file, SWITCHBOARD_* environment
// variables and command-line settings, in that order of precedence
// (later wins).
package config
