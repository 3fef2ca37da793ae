package torchfile

import (
	"archive/zip"
	"bytes"
	"fmt"
	"math"
	"strings"

	"github.com/flextrain/flextrain/safetensors"
)

// storage is a storage as a persistent id references it: its archive key, its element type and its bytes
// (the first numel·itemsize bytes of the data/<key> entry).
type storage struct {
	key   string
	dtype safetensors.DType
	data  []byte
}

// storageID identifies a persistent storage reference, so repeated references share one storage.
type storageID struct {
	key   string
	dtype safetensors.DType
	numel int64
}

// swapID identifies a byte-swapped copy of a big-endian storage for elements of a given size.
type swapID struct {
	storage *storage
	size    int
}

// archive is a torch.save ZIP archive held in memory: the file's bytes, the entries under its folder, its
// byte order, and what its storages claimed and cost so far.
type archive struct {
	file      []byte                 // the whole file
	prefix    string                 // the folder of its entries
	entries   map[string]*zip.File   // the entries in the folder, by full name
	bigEndian bool                   // storages are big-endian (byteorder "big")
	limit     int64                  // the caller's limit on the storages' bytes
	storages  map[storageID]*storage // the storages referenced so far
	claimed   map[string]int64       // the largest claim on each storage key, in bytes
	total     int64                  // the sum of claimed
	keyed     map[string][]byte      // the bytes of entry data/<key>, by key
	swapped   map[swapID][]byte      // byte-swapped copies of big-endian storages
	copied    int64                  // the bytes of those copies
	aliased   bool                   // a returned tensor's Data aliases file
}

// decode reads the state_dict of a torch.save archive held in b, at most limit bytes (positive), and
// reports whether any tensor's Data aliases b.
func decode(b []byte, limit int64) (map[string]safetensors.Tensor, bool, error) {
	if int64(len(b)) > limit {
		return nil, false, fmt.Errorf("%w: file of %d bytes, the limit is %d", ErrTooLarge, len(b), limit)
	}
	a, err := openArchive(b, limit)
	if err != nil {
		return nil, false, err
	}
	pkl, err := a.entry("data.pkl")
	if err != nil {
		return nil, false, err
	}
	v, err := unpickle(pkl, a.persistentLoad)
	if err != nil {
		return nil, false, err
	}
	ts, err := a.stateDict(v)
	return ts, a.aliased, err
}

// openArchive checks that b is a torch.save ZIP archive (not the legacy format), lists the entries of its
// folder and reads its byte order.
func openArchive(b []byte, limit int64) (*archive, error) {
	if err := checkMagic(b); err != nil {
		return nil, err
	}
	zr, err := zip.NewReader(bytes.NewReader(b), int64(len(b)))
	if err != nil {
		return nil, formatErrorf("not a readable ZIP archive: %v", err)
	}
	a := &archive{file: b, limit: limit, entries: map[string]*zip.File{}, storages: map[storageID]*storage{},
		claimed: map[string]int64{}, keyed: map[string][]byte{}, swapped: map[swapID][]byte{}}
	if err := a.list(zr.File); err != nil {
		return nil, err
	}
	if _, ok := a.entries[a.prefix+"/constants.pkl"]; ok {
		return nil, formatErrorf("a TorchScript archive (torch.jit.save), not a torch.save state_dict")
	}
	return a, a.readByteOrder()
}

// checkMagic refuses what is not a ZIP archive, naming the legacy torch.save format (a bare pickle, or a
// tar archive before that) when it is one.
func checkMagic(b []byte) error {
	switch {
	case bytes.HasPrefix(b, []byte("PK\x03\x04")):
		return nil
	case len(b) > 0 && b[0] == opProto, len(b) >= 262 && string(b[257:262]) == "ustar":
		return fmt.Errorf("%w: %w", ErrFormat, ErrLegacy)
	}
	return formatErrorf("not a torch.save archive (no ZIP signature)")
}

// list indexes the entries under the archive's folder, the folder of its first entry as PyTorch takes it,
// refusing a repeated name.
func (a *archive) list(files []*zip.File) error {
	if len(files) == 0 {
		return formatErrorf("empty ZIP archive")
	}
	prefix, _, ok := strings.Cut(files[0].Name, "/")
	if !ok || prefix == "" {
		return formatErrorf("first entry %s is not inside a folder", short(files[0].Name))
	}
	a.prefix = prefix
	for _, f := range files {
		if !strings.HasPrefix(f.Name, prefix+"/") {
			continue
		}
		if _, dup := a.entries[f.Name]; dup {
			return formatErrorf("entry %s appears twice", short(f.Name))
		}
		a.entries[f.Name] = f
	}
	return nil
}

// readByteOrder reads the optional byteorder entry ("little" when absent, as before PyTorch 2.1).
func (a *archive) readByteOrder() error {
	if _, ok := a.entries[a.prefix+"/byteorder"]; !ok {
		return nil
	}
	b, err := a.entry("byteorder")
	if err != nil {
		return err
	}
	switch strings.TrimSpace(string(b[:min(len(b), 16)])) {
	case "little":
	case "big":
		a.bigEndian = true
	default:
		return formatErrorf("byteorder entry %s, want little or big", short(string(b[:min(len(b), 16)])))
	}
	return nil
}

// entry returns the bytes of the stored (uncompressed, unencrypted) entry <folder>/name, a slice of the
// file.
func (a *archive) entry(name string) ([]byte, error) {
	full := a.prefix + "/" + name
	f, ok := a.entries[full]
	if !ok {
		return nil, formatErrorf("archive has no entry %s", short(full))
	}
	if f.Flags&1 != 0 || f.Method != zip.Store || f.CompressedSize64 != f.UncompressedSize64 {
		return nil, formatErrorf("entry %s is compressed or encrypted; torch.save stores entries as they are", short(full))
	}
	off, err := f.DataOffset()
	if err != nil {
		return nil, formatErrorf("entry %s: %v", short(full), err)
	}
	if off < 0 || off > int64(len(a.file)) || f.UncompressedSize64 > uint64(int64(len(a.file))-off) {
		return nil, formatErrorf("entry %s of %d bytes runs past the end of the file", short(full), f.UncompressedSize64)
	}
	end := off + int64(f.UncompressedSize64)
	return a.file[off:end:end], nil
}

// persistentLoad resolves a storage reference ("storage", storage class, key, location, numel) to the
// storage of entry data/<key>. The location (cpu, cuda:0) does not matter: tensors are read into memory.
func (a *archive) persistentLoad(pid any) (any, error) {
	t, ok := pid.(tuple)
	if !ok || len(t) != 5 || t[0] != "storage" {
		return nil, formatErrorf("persistent id is %s, not a storage reference", aType(pid))
	}
	st, ok := t[1].(storageType)
	if !ok {
		return nil, formatErrorf("storage class is %s", aType(t[1]))
	}
	key, ok1 := t[2].(string)
	_, ok2 := t[3].(string)
	numel, ok3 := t[4].(int64)
	if !ok1 || !ok2 || !ok3 || numel < 0 {
		return nil, formatErrorf("storage reference (%s, %s, %s) is not (key, location, numel)",
			aType(t[2]), aType(t[3]), aType(t[4]))
	}
	if len(key) > maxKey {
		return nil, formatErrorf("storage key of %d bytes, more than %d", len(key), maxKey)
	}
	return a.storage(storageID{key, st.dtype, numel}, st.name)
}

// storage returns the storage id refers to, made once: its claim is counted against the limit before its
// entry is looked at, and the entry must hold numel elements.
func (a *archive) storage(id storageID, class string) (*storage, error) {
	if s, ok := a.storages[id]; ok {
		return s, nil
	}
	size := int64(id.dtype.Size())
	if id.numel > math.MaxInt64/size {
		return nil, fmt.Errorf("%w: storage %s claims %d elements of %s", ErrTooLarge, short(id.key), id.numel, class)
	}
	n := id.numel * size
	if err := a.claim(id.key, n); err != nil {
		return nil, err
	}
	data, err := a.storageEntry(id.key)
	if err != nil {
		return nil, err
	}
	if int64(len(data)) < n {
		return nil, formatErrorf("storage %s holds %d bytes; %d elements of %s need %d", short(id.key), len(data), id.numel, class, n)
	}
	s := &storage{key: id.key, dtype: id.dtype, data: data[:n:n]}
	a.storages[id] = s
	return s, nil
}

// storageEntry returns the bytes of entry data/<key>, looked up once per key.
func (a *archive) storageEntry(key string) ([]byte, error) {
	if b, ok := a.keyed[key]; ok {
		return b, nil
	}
	b, err := a.entry("data/" + key)
	a.keyed[key] = b
	return b, err
}

// claim counts n bytes of storage key against the limit (the largest claim of each key counts).
func (a *archive) claim(key string, n int64) error {
	prev := a.claimed[key]
	if n <= prev {
		return nil
	}
	if n-prev > a.limit-a.total {
		return fmt.Errorf("%w: storage %s claims %d bytes, more than the limit of %d allows with the others",
			ErrTooLarge, short(key), n, a.limit)
	}
	a.total += n - prev
	a.claimed[key] = n
	return nil
}
