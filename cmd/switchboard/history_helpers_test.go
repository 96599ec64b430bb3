package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/switchboardhq/switchboard/internal/auth"
)

// customerGroup is the history group the connector tests map customer c to.
func customerGroup(c int) string { return fmt.Sprintf("customer:c%d", c) }

// historyTotal is how many messages the history groups of customers 0…n-1 hold on the node
// at endpoint.
func historyTotal(t *testing.T, endpoint string, n int) int {
	t.Helper()
	total := 0
	for c := range n {
		total += len(groupSeqs(t, endpoint, customerGroup(c)))
	}
	return total
}

// checkOnceInOrder fails unless the history group of each of customers 0…n-1 holds the seqs
// 0…want-1, each once, in order: what a connector must deliver after a crash or a kill. what
// names the items ("record", "message") and order the order they must keep.
func checkOnceInOrder(t *testing.T, endpoint string, n, want int, what, order string) {
	t.Helper()
	for c := range n {
		group := customerGroup(c)
		got := groupSeqs(t, endpoint, group)
		if len(got) != want {
			t.Errorf("%s has %d %ss, want %d (duplicates or losses)", group, len(got), what, want)
		}
		for i, s := range got {
			if s != i {
				t.Errorf("%s: %s %d has seq %d: not each %s (%v…)", group, what, i, s, order, got[max(0, i-3):min(len(got), i+3)])
				break
			}
		}
	}
}

// produceSeqs produces, for each seq in [from, to), one record {"seq":…} per customer 0…n-1
// (keyed c<customer>, to partition customer % parts) to account-updates, and waits for them.
func produceSeqs(t *testing.T, prod *kgo.Client, n, parts, from, to int) {
	t.Helper()
	var recs []*kgo.Record
	for i := from; i < to; i++ {
		for c := range n {
			recs = append(recs, &kgo.Record{Topic: "account-updates", Partition: int32(c % parts),
				Key: []byte(fmt.Sprintf("c%d", c)), Value: []byte(fmt.Sprintf(`{"seq":%d}`, i))})
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := prod.ProduceSync(ctx, recs...).FirstErr(); err != nil {
		t.Fatal(err)
	}
}

// adminConnectors reads the node at endpoint's /admin/connectors, each connector's status
// decoded as S (kafka.Status, outbox.Status).
func adminConnectors[S any](t *testing.T, endpoint string) []S {
	t.Helper()
	keys, _ := auth.NewKeyRing(crashKey)
	u := endpoint + "/admin/connectors"
	tok, _ := keys.MintServerToken(u, time.Hour)
	req, _ := http.NewRequest(http.MethodGet, u, nil)
	req.Header.Set("Authorization", "Bearer "+tok)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var v struct{ Connectors []S }
	if err := json.NewDecoder(resp.Body).Decode(&v); err != nil {
		t.Fatal(err)
	}
	return v.Connectors
}
