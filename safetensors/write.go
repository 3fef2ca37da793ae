package safetensors

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"os"
)

// headerEntry is one tensor's record as Write lays it out.
type headerEntry struct {
	DType   DType    `json:"dtype"`
	Shape   []int    `json:"shape"`
	Offsets [2]int64 `json:"data_offsets"`
}

// Write writes f in the safetensors format: the tensors in sorted name order, packed back to back, and the
// header padded with spaces to a multiple of 8 bytes so the data buffer starts 8-byte aligned. Every tensor
// is checked first (Tensor.Check); nothing is written if one is inconsistent.
func Write(w io.Writer, f *File) error {
	if err := write(w, f); err != nil {
		return fmt.Errorf("safetensors: write: %w", err)
	}
	return nil
}

func write(w io.Writer, f *File) error {
	hdr, err := encodeHeader(f)
	if err != nil {
		return err
	}
	bw := bufio.NewWriter(w)
	var head [8]byte
	binary.LittleEndian.PutUint64(head[:], uint64(len(hdr)))
	bw.Write(head[:]) // bufio.Writer errors are sticky: Flush reports the first
	bw.Write(hdr)
	for _, name := range f.Names() {
		bw.Write(f.Tensors[name].Data)
	}
	return bw.Flush()
}

// encodeHeader builds the padded JSON header, checking every tensor.
func encodeHeader(f *File) ([]byte, error) {
	m := make(map[string]any, len(f.Tensors)+1)
	if len(f.Metadata) > 0 {
		m[metadataKey] = f.Metadata
	}
	var off int64
	for _, name := range f.Names() {
		t := f.Tensors[name]
		if name == metadataKey {
			return nil, formatErrorf("tensor name %q is reserved for the metadata", name)
		}
		if err := t.check(); err != nil {
			return nil, formatErrorf("tensor %q: %v", name, err)
		}
		shape := append([]int{}, t.Shape...) // a nil shape must still be written as []
		m[name] = headerEntry{DType: t.DType, Shape: shape, Offsets: [2]int64{off, off + int64(len(t.Data))}}
		off += int64(len(t.Data))
	}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(m); err != nil { // map keys come out sorted, as the offsets were assigned
		return nil, err
	}
	hdr := bytes.TrimRight(buf.Bytes(), "\n")
	for len(hdr)%8 != 0 {
		hdr = append(hdr, ' ')
	}
	return hdr, nil
}

// WriteFile writes f to path with Write. It is a plain write: callers that need atomicity write to a
// temporary file and rename it (the checkpoints package does).
func WriteFile(path string, f *File) (err error) {
	fh, err := os.Create(path)
	if err != nil {
		return fmt.Errorf("safetensors: write %s: %w", path, err)
	}
	defer func() {
		if cerr := fh.Close(); cerr != nil && err == nil {
			err = fmt.Errorf("safetensors: write %s: %w", path, cerr)
		}
	}()
	if err := write(fh, f); err != nil {
		return fmt.Errorf("safetensors: write %s: %w", path, err)
	}
	return nil
}
