// Package checkpoints stores training checkpoints: named tensors and an opaque JSON state, written
// atomically, verified completely on load, listed, resolved for resume, pruned, exported and inspected.
//
// A checkpoint is a directory output_dir/checkpoint-<step>/ holding
//
//	weights.st.zst      trainable weights: safetensors, zstd-compressed, in a checksummed frame
//	optimizer.st.zst    optimizer state (AdamW m and v per tensor), the same way
//	trainer_state.json  the caller's JSON state, byte for byte (step, data cursor, RNG, schedule, …)
//	config.yaml         the caller's configuration bytes
//	MANIFEST            written last: step, format version, and the size and SHA-256 of every file above
//
// Save writes everything into checkpoint-<step>.tmp-<random>, fsyncs each file and the directory, renames
// it to its final name and fsyncs output_dir, so a crash at any point leaves the previous checkpoint
// loadable. Load verifies every byte (magic, version, checksums, manifest) before it returns anything; a
// damaged file is ErrCorrupt and a file of another format version is ErrVersion. The package knows
// nothing about the model or the data: the trainer names its tensors and fills the state.
//
// Load reads files that may come from anyone, so it reads them bounded and in one streaming pass: only
// regular files are opened (never a FIFO or a device), each file's size is checked against the manifest
// and a bound before it is read, and a tensor file streams through the zstd decoder into one buffer of
// its payload's size, hashed on the way; that size is checked against the Store's Limits before anything
// is allocated, so memory stays near the real payload and a decompression bomb costs nothing.
//
// A Store is not safe for concurrent saves into the same directory: one trainer owns an output_dir.
package checkpoints

import (
	"encoding/json"

	"github.com/flextrain/flextrain/safetensors"
)

// Checkpoint is the content of one checkpoint. Save never changes it; Load returns tensors that alias
// one buffer per file, so copy Data before changing it in place.
type Checkpoint struct {
	// Step is the optimizer step the checkpoint was taken after; it names the directory.
	Step int
	// Weights are the trainable weights by name.
	Weights map[string]safetensors.Tensor
	// Optimizer is the optimizer state by name (for AdamW, the m and v of each weight).
	Optimizer map[string]safetensors.Tensor
	// State is the trainer's state, stored byte for byte as trainer_state.json. It must be valid JSON.
	State json.RawMessage
	// Config is the run configuration, stored byte for byte as config.yaml.
	Config []byte
}

// Entry is one complete checkpoint found in an output directory.
type Entry struct {
	Step int    // the step in its name and its MANIFEST
	Path string // output_dir/checkpoint-<step>
}

// Store is an output directory of checkpoints on a file system. The zero FS is the real one (OS); tests
// give a failing or recording FS. The zero Limits read tensor files of up to MaxPayload bytes; a caller
// that knows its tensors sets tighter ones (see PayloadBound).
type Store struct {
	Dir    string // output_dir, which holds the checkpoint-<step> directories
	FS     FS     // nil means OS
	Limits Limits // the most bytes each tensor file may decompress to, for every read and write
}

// Save writes ck as Dir/checkpoint-<ck.Step> (see Store.Save) on the real file system.
func Save(dir string, ck *Checkpoint) (string, error) { return Store{Dir: dir}.Save(ck) }

// Load reads and verifies the checkpoint directory at path (see Store.Load) on the real file system.
func Load(path string) (*Checkpoint, error) { return Store{}.Load(path) }

// List returns the complete checkpoints in dir (see Store.List).
func List(dir string) ([]Entry, error) { return Store{Dir: dir}.List() }

// Latest returns the newest checkpoint in dir that verifies (see Store.Latest).
func Latest(dir string) (Entry, error) { return Store{Dir: dir}.Latest() }

// Resolve turns a --resume value into a checkpoint path (see Store.Resolve).
func Resolve(dir, spec string) (string, []string, error) { return Store{Dir: dir}.Resolve(spec) }

// Prune removes old checkpoints from dir (see Store.Prune).
func Prune(dir string, keep int, protect ...int) ([]string, error) {
	return Store{Dir: dir}.Prune(keep, protect...)
}
