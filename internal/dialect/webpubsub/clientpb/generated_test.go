package clientpb

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// TestGeneratedIsCurrent regenerates the Go code from webpubsub.client.proto
// with protoc and the protoc-gen-go of go.mod's google.golang.org/protobuf,
// and fails when the checked-in file differs (run `make proto`). Without
// protoc it is skipped, unless SWITCHBOARD_REQUIRE_PROTOC is set (make
// test-go sets it, after `make protoc` installed it).
func TestGeneratedIsCurrent(t *testing.T) {
	protoc, err := exec.LookPath("protoc")
	if err != nil {
		if os.Getenv("SWITCHBOARD_REQUIRE_PROTOC") != "" {
			t.Fatal("protoc is required (make protoc)")
		}
		t.Skip("protoc not installed (make protoc)")
	}
	dir := t.TempDir()
	plugin := filepath.Join(dir, "protoc-gen-go")
	if out, err := exec.Command("go", "build", "-o", plugin, "google.golang.org/protobuf/cmd/protoc-gen-go").CombinedOutput(); err != nil {
		t.Fatalf("build protoc-gen-go: %v\n%s", err, out)
	}
	cmd := exec.Command(protoc, "--plugin=protoc-gen-go="+plugin, "--go_out="+dir, "--go_opt=paths=source_relative", "webpubsub.client.proto")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("protoc: %v\n%s", err, out)
	}
	want, err := os.ReadFile(filepath.Join(dir, "webpubsub.client.pb.go"))
	if err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile("webpubsub.client.pb.go")
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Fatal("webpubsub.client.pb.go is not what webpubsub.client.proto generates: run make proto")
	}
}
