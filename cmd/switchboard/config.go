package main

import (
	"github.com/spf13/cobra"

	"github.com/switchboardhq/switchboard/internal/config"
)

func newConfigCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "config",
		Short: "Print a commented configuration file with every key at its default",
		Example: `  switchboard config > switchboard.yaml   # then edit, and: switchboard -c switchboard.yaml
  switchboard -c switchboard.yaml --check-config`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			_, err := cmd.OutOrStdout().Write(config.Sample())
			return err
		},
	}
}
