// Command switchboard is a self-hosted real-time messaging server that
// speaks the Azure Web PubSub protocols.
package main

import (
	"fmt"
	"os"

	"github.com/spf13/cobra"
)

func main() {
	if err := newRoot().Execute(); err != nil {
		fmt.Fprintln(os.Stderr, "switchboard:", err)
		os.Exit(1)
	}
}

func newRoot() *cobra.Command {
	root := &cobra.Command{
		Use:           "switchboard",
		Short:         "Self-hosted real-time messaging, wire-compatible with Azure Web PubSub",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	serve := newServeCmd()
	root.AddCommand(serve, newTokenCmd(), newSendCmd(), newVersionCmd(), newConfigCmd(), newHealthCmd(), newConnectorsCmd())
	root.AddCommand(newBenchCmd())
	// With no subcommand, serve.
	root.RunE = serve.RunE
	root.Flags().AddFlagSet(serve.Flags())
	return root
}
