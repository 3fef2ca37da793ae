package torchfile

import (
	"archive/zip"
	"bytes"
	"encoding/binary"
	"maps"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"testing"
)

// pickler assembles pickle bytes opcode by opcode, for crafting hostile and edge-case pickles.
type pickler struct{ b []byte }

// newPickle starts a pickle of the given protocol.
func newPickle(proto byte) *pickler { return &pickler{b: []byte{opProto, proto}} }

func (p *pickler) op(ops ...byte) *pickler { p.b = append(p.b, ops...); return p }

// str pushes a string (BINUNICODE).
func (p *pickler) str(s string) *pickler {
	p.b = binary.LittleEndian.AppendUint32(append(p.b, opBinUnicode), uint32(len(s)))
	p.b = append(p.b, s...)
	return p
}

// int pushes an integer (BININT, or LONG1 past 32 bits).
func (p *pickler) int(v int64) *pickler {
	if v == int64(int32(v)) {
		p.b = binary.LittleEndian.AppendUint32(append(p.b, opBinInt), uint32(v))
		return p
	}
	p.b = binary.LittleEndian.AppendUint64(append(p.b, opLong1, 8), uint64(v))
	return p
}

// ints pushes a tuple of integers.
func (p *pickler) ints(vs ...int64) *pickler {
	p.op(opMark)
	for _, v := range vs {
		p.int(v)
	}
	return p.op(opTuple)
}

// global pushes module.name with the GLOBAL opcode.
func (p *pickler) global(module, name string) *pickler {
	p.b = append(p.b, opGlobal)
	p.b = append(p.b, module+"\n"+name+"\n"...)
	return p
}

// stackGlobal pushes module.name with the STACK_GLOBAL opcode.
func (p *pickler) stackGlobal(module, name string) *pickler {
	return p.str(module).str(name).op(opStackGlobal)
}

// tensor pushes _rebuild_tensor_v2 of the storage (class torch.<class>, key, numel elements) with the
// given offset, size and stride.
func (p *pickler) tensor(class, key string, numel, offset int64, size, stride []int64) *pickler {
	p.global("torch._utils", "_rebuild_tensor_v2").op(opMark)
	p.op(opMark).str("storage").global("torch", class).str(key).str("cpu").int(numel).op(opTuple, opBinPersID)
	p.int(offset).ints(size...).ints(stride...).op(opNewFalse)
	p.global("collections", "OrderedDict").op(opEmptyTuple, opReduce)
	return p.op(opTuple, opReduce)
}

// done ends the pickle with STOP and returns its bytes.
func (p *pickler) done() []byte { return append(p.b, opStop) }

// oneTensor is the pickle of {"w": a float32 tensor of shape [n] on storage "0" of n elements}.
func oneTensor(n int64) []byte {
	return newPickle(2).op(opEmptyDict).str("w").tensor("FloatStorage", "0", n, 0, []int64{n}, []int64{1}).op(opSetItem).done()
}

// torchArchive zips a pickle and storages as torch.save lays them out: archive/data.pkl,
// archive/data/<key> (stored, uncompressed) and archive/version; extra entries are added as they are.
func torchArchive(t testing.TB, pkl []byte, storages map[string][]byte, extra ...string) []byte {
	t.Helper()
	var buf bytes.Buffer
	w := zip.NewWriter(&buf)
	add := func(name string, b []byte) {
		f, err := w.CreateHeader(&zip.FileHeader{Name: "archive/" + name, Method: zip.Store})
		if err == nil {
			_, err = f.Write(b)
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	add("data.pkl", pkl)
	for _, key := range slices.Sorted(maps.Keys(storages)) {
		add("data/"+key, storages[key])
	}
	for i := 0; i+1 < len(extra); i += 2 {
		add(extra[i], []byte(extra[i+1]))
	}
	add("version", []byte("3\n"))
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// writeFile writes b to name in a new temporary folder and returns its path.
func writeFile(t testing.TB, name string, b []byte) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// allocated returns the bytes the heap allocated while fn ran.
func allocated(fn func()) uint64 {
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	fn()
	runtime.ReadMemStats(&after)
	return after.TotalAlloc - before.TotalAlloc
}
