package checkpoints

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"slices"
)

// The files of a checkpoint directory, in the order Save writes them; MANIFEST comes last and marks the
// checkpoint complete.
const (
	weightsFile   = "weights.st.zst"
	optimizerFile = "optimizer.st.zst"
	stateFile     = "trainer_state.json"
	configFile    = "config.yaml"
	manifestFile  = "MANIFEST"
)

// payloadFiles are the files a manifest must list, each exactly once.
var payloadFiles = []string{weightsFile, optimizerFile, stateFile, configFile}

// manifestFormat names the manifest's format inside its JSON, for a reader who opens it by hand.
const manifestFormat = "flextrain-checkpoint"

// manifest is the JSON body of MANIFEST: what a complete checkpoint holds. The SHA-256 of the plain
// trainer_state.json and config.yaml live here, so those stay readable with cat yet are verified.
type manifest struct {
	Format  string       `json:"format"`
	Version int          `json:"version"`
	Step    int          `json:"step"`
	Files   []listedFile `json:"files"`
}

// listedFile is one file a manifest lists: its name inside the checkpoint directory, size and SHA-256 (hex).
type listedFile struct {
	Name   string `json:"name"`
	Size   int64  `json:"size"`
	SHA256 string `json:"sha256"`
}

// describe returns the manifest entry of a file named name holding data.
func describe(name string, data []byte) listedFile {
	sum := sha256.Sum256(data)
	return listedFile{Name: name, Size: int64(len(data)), SHA256: hex.EncodeToString(sum[:])}
}

// encodeManifest returns the framed MANIFEST for step and the listed files.
func encodeManifest(step int, files []listedFile) []byte {
	m := manifest{Format: manifestFormat, Version: FormatVersion, Step: step, Files: files}
	body, err := json.MarshalIndent(m, "", "  ")
	if err != nil { // a struct of strings and ints always marshals
		panic("checkpoints: marshal manifest: " + err.Error())
	}
	return encodeFrame(kindManifest, append(body, '\n'), nil)
}

// decodeManifest reads and verifies a framed MANIFEST of size bytes from r and checks that it lists exactly
// the payload files.
func decodeManifest(r io.Reader, size int64) (*manifest, error) {
	body, err := readFrame(r, size, kindManifest, maxManifest)
	if err != nil {
		return nil, err
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	var m manifest
	if err := dec.Decode(&m); err != nil {
		return nil, fmt.Errorf("%w: manifest JSON: %w", ErrCorrupt, err)
	}
	if m.Format != manifestFormat || m.Version != FormatVersion || m.Step < 0 {
		return nil, fmt.Errorf("%w: manifest says format %q version %d step %d", ErrCorrupt, m.Format, m.Version, m.Step)
	}
	return &m, m.checkFiles()
}

// checkFiles reports a manifest that does not list each payload file exactly once.
func (m *manifest) checkFiles() error {
	names := make([]string, len(m.Files))
	for i, f := range m.Files {
		names[i] = f.Name
	}
	want := slices.Clone(payloadFiles)
	slices.Sort(names)
	slices.Sort(want)
	if !slices.Equal(names, want) {
		return fmt.Errorf("%w: manifest lists %v, want %v", ErrCorrupt, names, want)
	}
	return nil
}

// entry returns the manifest entry of the named file (checkFiles guarantees there is one).
func (m *manifest) entry(name string) listedFile {
	for _, f := range m.Files {
		if f.Name == name {
			return f
		}
	}
	return listedFile{}
}

// checkSum reports whether sum is the SHA-256 the manifest lists for the named file. The size was checked
// before the file was read (see openSized).
func (m *manifest) checkSum(name string, sum []byte) error {
	if got, want := hex.EncodeToString(sum), m.entry(name).SHA256; got != want {
		return fmt.Errorf("%w: SHA-256 %s, manifest lists %s", ErrCorrupt, got, want)
	}
	return nil
}
