package train

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"

	"github.com/flextrain/flextrain/checkpoints"
	"github.com/flextrain/flextrain/internal/fileio"
)

// DataFingerprint identifies the content of the training data file: its size and a SHA-256, of the
// whole file when that is cheap (up to wholeHashLimit) and of its first and last endBytes otherwise (a
// 1 GB LLaVA instruction file then costs 32 MiB of reading, not a second pass over all of it). The
// modification time is left out on purpose: copying a dataset to another machine changes it, and a
// resume there is legitimate.
type DataFingerprint struct {
	Size   int64  `json:"size"`
	Method string `json:"method"` // hashWhole or hashEnds
	SHA256 string `json:"sha256"`
}

// Fingerprint methods, and their sizes.
const (
	hashWhole      = "sha256"
	hashEnds       = "sha256-first-last-16MiB"
	wholeHashLimit = 256 << 20
	endBytes       = 16 << 20
)

// fingerprintFile reads the regular file at path and returns its fingerprint.
func fingerprintFile(path string) (DataFingerprint, error) {
	f, err := fileio.Open(path)
	if err != nil {
		return DataFingerprint{}, fmt.Errorf("train: fingerprint data_path: %w", err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return DataFingerprint{}, fmt.Errorf("train: fingerprint data_path %s: %w", path, err)
	}
	fp := DataFingerprint{Size: st.Size(), Method: hashWhole}
	h := sha256.New()
	if fp.Size > wholeHashLimit {
		fp.Method = hashEnds
		err = hashEndsOf(h, f, fp.Size)
	} else {
		_, err = io.Copy(h, f)
	}
	if err != nil {
		return DataFingerprint{}, fmt.Errorf("train: fingerprint data_path %s: %w", path, err)
	}
	fp.SHA256 = hex.EncodeToString(h.Sum(nil))
	return fp, nil
}

// hashEndsOf writes the first and the last endBytes of the size-byte file f into h.
func hashEndsOf(h io.Writer, f *os.File, size int64) error {
	if _, err := io.Copy(h, io.NewSectionReader(f, 0, endBytes)); err != nil {
		return err
	}
	_, err := io.Copy(h, io.NewSectionReader(f, size-endBytes, endBytes))
	return err
}

// fingerprintData records the fingerprint of data_path for the checkpoints of this run.
func (t *trainer[T]) fingerprintData() error {
	fp, err := fingerprintFile(t.cfg.DataPath)
	t.data = fp
	return err
}

// checkData refuses to resume the checkpoint at path with a data file other than the one it was trained
// on, whose order and position would not match, unless RunOptions.AllowDataChange says to go on.
func (t *trainer[T]) checkData(path string, saved *DataFingerprint) error {
	switch {
	case saved == nil:
		t.log.warn("the checkpoint records no fingerprint of its data file; cannot tell whether data_path changed", "checkpoint", path)
		return nil
	case *saved == t.data:
		return nil
	case t.opts.AllowDataChange:
		t.log.warn("data_path differs from the file the checkpoint was trained on; going on as --allow-data-change says", "data_path", t.cfg.DataPath)
		return nil
	}
	return fmt.Errorf("train: resume %s: %w: data_path %s is not the file the checkpoint was trained on (%d bytes, %s %s; now %d bytes, %s %s): its order and position would not match. Restore it, or pass --allow-data-change to go on with the new file",
		path, checkpoints.ErrConfigMismatch, t.cfg.DataPath, saved.Size, saved.Method, saved.SHA256[:12], t.data.Size, t.data.Method, t.data.SHA256[:12])
}
