package checkpoints

import (
	"testing"

	"github.com/flextrain/flextrain/safetensors"
)

// TestLoadAllocatesAboutThePayload: Load streams each tensor file into one buffer of its payload's size,
// so it allocates less than twice the raw payload, the zstd decoders included (reading the whole file,
// then decompressing, then transposing the lanes took about three times).
func TestLoadAllocatesAboutThePayload(t *testing.T) {
	ck := benchCheckpoint(32)
	path, err := Save(t.TempDir(), ck)
	if err != nil {
		t.Fatal(err)
	}
	var raw uint64
	for _, group := range []map[string]safetensors.Tensor{ck.Weights, ck.Optimizer} {
		for _, tensor := range group {
			raw += uint64(len(tensor.Data))
		}
	}
	var got *Checkpoint
	n := bytesAllocated(func() { got, err = Load(path) })
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	if err := sameCheckpoint(got, ck); err != nil {
		t.Fatal(err)
	}
	t.Logf("Load allocated %d bytes for %d bytes of tensor data (%.2f×)", n, raw, float64(n)/float64(raw))
	if n > 2*raw {
		t.Errorf("Load allocated %d bytes for %d bytes of tensor data; want at most twice that", n, raw)
	}
}
