package pgtest_test

import (
	"context"
	"os"
	"testing"

	"github.com/switchboardhq/switchboard/internal/pgtest"
)

func TestMain(m *testing.M) {
	code := m.Run()
	pgtest.Stop()
	os.Exit(code)
}

// TestDatabasesAreSeparate: each test gets a database of its own on the shared server.
func TestDatabasesAreSeparate(t *testing.T) {
	s := pgtest.Start(t)
	a, b := s.NewDatabase(t), s.NewDatabase(t)
	if a == b {
		t.Fatalf("two tests share database %s", a)
	}
	ctx := context.Background()
	ca := pgtest.Connect(t, a)
	if _, err := ca.Exec(ctx, "CREATE TABLE x (n int)"); err != nil {
		t.Fatal(err)
	}
	cb := pgtest.Connect(t, b)
	var n int
	if err := cb.QueryRow(ctx, "SELECT count(*) FROM pg_tables WHERE tablename = 'x'").Scan(&n); err != nil || n != 0 {
		t.Fatalf("table of database a seen in b: %d %v", n, err)
	}
}
