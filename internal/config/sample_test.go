package config

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

// TestSampleLoadsAsDefault: the sample file names every key and, loaded as a config file,
// gives exactly the defaults.
func TestSampleLoadsAsDefault(t *testing.T) {
	sample := Sample()
	path := filepath.Join(t.TempDir(), "switchboard.yaml")
	if err := os.WriteFile(path, sample, 0o600); err != nil {
		t.Fatal(err)
	}
	got, err := Load(path, nil, nil)
	if err != nil {
		t.Fatalf("loading the sample: %v\n%s", err, sample)
	}
	if want := Default(); !reflect.DeepEqual(got, want) {
		t.Errorf("the sample loads as\n%+v\nwant the defaults\n%+v", got, want)
	}
	for _, s := range Settings() {
		key := s.Key[strings.LastIndex(s.Key, ".")+1:]
		if !strings.Contains(string(sample), " "+key+":") && !strings.Contains(string(sample), "\n"+key+":") {
			t.Errorf("key %s is not in the sample", s.Key)
		}
		if !strings.Contains(string(sample), s.Env) {
			t.Errorf("%s's environment variable %s is not in the sample", s.Key, s.Env)
		}
	}
}
