package connector

import (
	"slices"
	"testing"
)

func TestRunning(t *testing.T) {
	var r Running[int]
	if got := r.List(); len(got) != 0 {
		t.Fatalf("zero value lists %v", got)
	}
	r.Add(1)
	r.Add(2)
	r.Add(1)
	r.Remove(3)
	got := r.List()
	slices.Sort(got)
	if !slices.Equal(got, []int{1, 2}) {
		t.Fatalf("List = %v, want [1 2]", got)
	}
	r.Remove(1)
	if got := r.List(); !slices.Equal(got, []int{2}) {
		t.Fatalf("after Remove(1): %v", got)
	}
}
