package main

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/switchboardhq/switchboard/internal/connector/outbox"
)

func newConnectorsCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "connectors",
		Short: "Tools for the connectors (see the README's Connectors section)",
		Args:  cobra.NoArgs,
	}
	schema := &cobra.Command{
		Use:   "schema",
		Short: "Print the DDL of a connector's tables",
		Args:  cobra.NoArgs,
	}
	var table, deadLetter string
	var partitions int
	pg := &cobra.Command{
		Use:   "postgres",
		Short: "Print the DDL of a PostgreSQL outbox table (type postgres_outbox): table, index, NOTIFY trigger, dead-letter table",
		Example: `  switchboard connectors schema postgres | psql "$DATABASE_URL"
  switchboard connectors schema postgres --table app.outbox --partitions 16 --dead-letter-table app.outbox_dead_letter`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			dl := deadLetter
			switch dl {
			case "":
				dl = table + "_dead_letter"
			case "none":
				dl = ""
			}
			ddl, err := outbox.Schema(table, partitions, dl)
			if err != nil {
				return err
			}
			_, err = fmt.Fprint(cmd.OutOrStdout(), ddl)
			return err
		},
	}
	pg.Flags().StringVar(&table, "table", "switchboard_outbox", "outbox table, [schema.]name (the connector's table)")
	pg.Flags().IntVar(&partitions, "partitions", outbox.DefaultPartitions, "partitions the rows are hashed into by partition_key: the most nodes that send at once (1 to 256)")
	pg.Flags().StringVar(&deadLetter, "dead-letter-table", "", "dead-letter table (the connector's dead_letter_table); default <table>_dead_letter; none: no dead-letter table")
	schema.AddCommand(pg)
	cmd.AddCommand(schema)
	return cmd
}
