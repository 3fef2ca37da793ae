package safetensors

import (
	"bytes"
	"encoding/binary"
	"errors"
	"math"
	"os"
	"path/filepath"
	"reflect"
	"runtime"
	"strings"
	"testing"
)

// craft builds a file from a literal header and data buffer, without padding or checks.
func craft(header string, data []byte) []byte {
	b := binary.LittleEndian.AppendUint64(nil, uint64(len(header)))
	return append(append(b, header...), data...)
}

// sample is a File with one tensor of every dtype, a scalar and an empty tensor.
func sample() *File {
	return &File{
		Metadata: map[string]string{"format": "pt", "note": "<ünïcode & html>"},
		Tensors: map[string]Tensor{
			"f64":    {DType: F64, Shape: []int{2}, Data: seq(16)},
			"f32":    {DType: F32, Shape: []int{1, 3}, Data: seq(12)},
			"f16":    {DType: F16, Shape: []int{3}, Data: seq(6)},
			"bf16":   {DType: BF16, Shape: []int{2, 1}, Data: seq(4)},
			"i64":    {DType: I64, Shape: []int{1}, Data: seq(8)},
			"i32":    {DType: I32, Shape: []int{2, 2}, Data: seq(16)},
			"u8":     {DType: U8, Shape: []int{5}, Data: seq(5)},
			"bool":   {DType: BOOL, Shape: []int{3}, Data: []byte{0, 1, 1}},
			"scalar": {DType: F32, Shape: []int{}, Data: seq(4)},
			"empty":  {DType: F32, Shape: []int{0, 4}, Data: []byte{}},
		},
	}
}

// seq returns n distinct bytes, so that a swapped or shifted tensor is noticed.
func seq(n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(7*i + n)
	}
	return b
}

func TestRoundTrip(t *testing.T) {
	want := sample()
	var buf bytes.Buffer
	if err := Write(&buf, want); err != nil {
		t.Fatalf("Write: %v", err)
	}
	b := buf.Bytes()
	n := binary.LittleEndian.Uint64(b)
	if (8+n)%8 != 0 {
		t.Errorf("data buffer starts at %d; want a multiple of 8", 8+n)
	}
	if hdr := string(b[8 : 8+n]); strings.TrimRight(hdr, " ") != strings.TrimSpace(hdr) || hdr[0] != '{' {
		t.Errorf("header %q: want a JSON object padded with trailing spaces only", hdr)
	}
	got, err := Parse(b)
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	if !reflect.DeepEqual(got.Metadata, want.Metadata) {
		t.Errorf("metadata: got %v; want %v", got.Metadata, want.Metadata)
	}
	if !reflect.DeepEqual(got.Names(), want.Names()) {
		t.Fatalf("names: got %v; want %v", got.Names(), want.Names())
	}
	for _, name := range want.Names() {
		g, w := got.Tensors[name], want.Tensors[name]
		if g.DType != w.DType || !reflect.DeepEqual(g.Shape, w.Shape) || !bytes.Equal(g.Data, w.Data) {
			t.Errorf("%s: got %s%v %x; want %s%v %x", name, g.DType, g.Shape, g.Data, w.DType, w.Shape, w.Data)
		}
	}
}

// TestParseKnownFile parses bytes laid out by hand, as another writer would, with a gap-free buffer.
func TestParseKnownFile(t *testing.T) {
	data := binary.LittleEndian.AppendUint32(nil, math.Float32bits(1.5))
	data = binary.LittleEndian.AppendUint32(data, math.Float32bits(-2))
	data = append(data, 9)
	b := craft(`{"b":{"dtype":"U8","shape":[1],"data_offsets":[8,9]},`+
		`"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"__metadata__":{"k":"v"}}`, data)
	f, err := Parse(b)
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	a, err := f.Tensors["a"].Float32s()
	if err != nil || !reflect.DeepEqual(a, []float32{1.5, -2}) {
		t.Errorf("a: got %v, %v; want [1.5 -2]", a, err)
	}
	if got := f.Tensors["b"].Data; !bytes.Equal(got, []byte{9}) || cap(got) != 1 {
		t.Errorf("b: got %v (cap %d); want [9] (cap 1)", got, cap(got))
	}
	if f.Metadata["k"] != "v" {
		t.Errorf("metadata: got %v; want k=v", f.Metadata)
	}
}

func TestParseRejects(t *testing.T) {
	f32 := func(name, shape, offsets string) string {
		return `"` + name + `":{"dtype":"F32","shape":` + shape + `,"data_offsets":` + offsets + `}`
	}
	big := binary.LittleEndian.AppendUint64(nil, 1<<40)
	cases := []struct {
		name string
		file []byte
		want []string // substrings of the error
	}{
		{"short file", []byte{1, 2, 3}, []string{"shorter than the 8-byte"}},
		{"header past end", craft(`{}`, nil)[:9], []string{"runs past the end"}},
		{"absurd header", append(big, `{}`...), []string{"exceeds the"}},
		{"invalid JSON", craft(`{"w":`, nil), []string{"invalid JSON"}},
		{"not an object", craft(`[1,2]`, nil), []string{"not an object"}},
		{"trailing data", craft(`{} {}`, nil), []string{"data after"}},
		{"unknown dtype", craft(`{"w":{"dtype":"Q4","shape":[1],"data_offsets":[0,1]}}`, seq(1)), []string{`"w"`, `"Q4"`}},
		{"negative dim", craft(`{`+f32("w", "[-1]", "[0,0]")+`}`, nil), []string{`"w"`, "negative"}},
		{"fractional dim", craft(`{`+f32("w", "[1.5]", "[0,4]")+`}`, seq(4)), []string{`"w"`, "1.5"}},
		{"count overflow", craft(`{`+f32("w", "[4294967296,4294967296]", "[0,4]")+`}`, seq(4)), []string{`"w"`, "overflows"}},
		{"size mismatch", craft(`{`+f32("w", "[2]", "[0,4]")+`}`, seq(8)), []string{`"w"`, "needs 8"}},
		{"past buffer", craft(`{`+f32("w", "[2]", "[4,12]")+`}`, seq(8)), []string{`"w"`, "run past"}},
		{"reversed offsets", craft(`{`+f32("w", "[0]", "[4,0]")+`}`, seq(8)), []string{`"w"`, "ordered pair"}},
		{"three offsets", craft(`{`+f32("w", "[1]", "[0,4,8]")+`}`, seq(8)), []string{`"w"`, "want 2"}},
		{"overlap", craft(`{`+f32("v", "[2]", "[0,8]")+`,`+f32("w", "[2]", "[4,12]")+`}`, seq(12)),
			[]string{`"w"`, `"v"`, "overlap"}},
		{"duplicate name", craft(`{`+f32("w", "[1]", "[0,4]")+`,`+f32("w", "[1]", "[4,8]")+`}`, seq(8)),
			[]string{`"w"`, "twice"}},
		{"duplicate field", craft(`{"w":{"dtype":"F32","dtype":"F32","shape":[1],"data_offsets":[0,4]}}`, seq(4)),
			[]string{`"w"`, `"dtype"`, "twice"}},
		{"unknown field", craft(`{"w":{"dtype":"F32","shape":[1],"data_offsets":[0,4],"x":1}}`, seq(4)),
			[]string{`"w"`, `"x"`}},
		{"missing offsets", craft(`{"w":{"dtype":"F32","shape":[1]}}`, seq(4)), []string{`"w"`, "missing data_offsets"}},
		{"metadata not string", craft(`{"__metadata__":{"k":1}}`, nil), []string{`"k"`, "not a string"}},
		{"metadata nested", craft(`{"__metadata__":{"k":{"a":"b"}}}`, nil), []string{`"k"`, "not a string"}},
		{"metadata twice", craft(`{"__metadata__":{},"__metadata__":{}}`, nil), []string{"__metadata__", "twice"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			f, err := Parse(c.file)
			if err == nil {
				t.Fatalf("Parse: got %d tensors and no error; want an error", len(f.Tensors))
			}
			if !errors.Is(err, ErrFormat) {
				t.Errorf("got %v; want an error wrapping ErrFormat", err)
			}
			for _, w := range c.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("got %q; want it to mention %s", err, w)
				}
			}
		})
	}
}

// allocated runs fn and returns the bytes the process allocated meanwhile (a total that no collection
// lowers, so none is needed first).
func allocated(fn func()) uint64 {
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	fn()
	runtime.ReadMemStats(&after)
	return after.TotalAlloc - before.TotalAlloc
}

func TestReadFileRefusesHugeClaimsWithoutAllocating(t *testing.T) {
	dir := t.TempDir()
	huge := filepath.Join(dir, "huge-header.safetensors")
	os.WriteFile(huge, append(binary.LittleEndian.AppendUint64(nil, 1<<40), `{}`...), 0o644)
	pastEnd := filepath.Join(dir, "past-end.safetensors")
	os.WriteFile(pastEnd, append(binary.LittleEndian.AppendUint64(nil, 50<<20), `{}`...), 0o644)
	hugeData := filepath.Join(dir, "huge-data.safetensors")
	os.WriteFile(hugeData, craft(`{"w":{"dtype":"F32","shape":[274877906944],"data_offsets":[0,1099511627776]}}`, nil), 0o644)
	for _, path := range []string{huge, pastEnd, hugeData} {
		var err error
		n := allocated(func() { _, err = ReadFile(path) })
		if !errors.Is(err, ErrFormat) || !strings.Contains(err.Error(), path) {
			t.Errorf("%s: got %v; want an ErrFormat error naming the file", filepath.Base(path), err)
		}
		if n > 1<<20 {
			t.Errorf("%s: allocated %d bytes; want under 1 MiB", filepath.Base(path), n)
		}
	}
}

func TestWriteFileReadFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "w.safetensors")
	want := sample()
	if err := WriteFile(path, want); err != nil {
		t.Fatalf("WriteFile: %v", err)
	}
	got, err := ReadFile(path)
	if err != nil {
		t.Fatalf("ReadFile: %v", err)
	}
	for _, name := range want.Names() {
		if !bytes.Equal(got.Tensors[name].Data, want.Tensors[name].Data) {
			t.Errorf("%s: got %x; want %x", name, got.Tensors[name].Data, want.Tensors[name].Data)
		}
	}
	missing := filepath.Join(t.TempDir(), "missing.safetensors")
	if _, err := ReadFile(missing); !errors.Is(err, os.ErrNotExist) || errors.Is(err, ErrFormat) {
		t.Errorf("missing file: got %v; want os.ErrNotExist, not ErrFormat", err)
	}
}

type failWriter struct{}

func (failWriter) Write([]byte) (int, error) { return 0, errors.New("disk full") }

func TestWriteRejects(t *testing.T) {
	cases := []struct {
		name string
		t    Tensor
		tn   string
		want string
	}{
		{"short data", Tensor{DType: F32, Shape: []int{2}, Data: seq(7)}, "w", "7 data bytes"},
		{"unknown dtype", Tensor{DType: "C64", Shape: []int{1}, Data: seq(8)}, "w", `"C64"`},
		{"negative dim", Tensor{DType: U8, Shape: []int{-1}}, "w", "negative"},
		{"reserved name", Tensor{DType: U8, Shape: []int{1}, Data: seq(1)}, metadataKey, "reserved"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var buf bytes.Buffer
			err := Write(&buf, &File{Tensors: map[string]Tensor{c.tn: c.t}})
			if err == nil || !strings.Contains(err.Error(), c.want) || !strings.Contains(err.Error(), c.tn) {
				t.Errorf("got %v; want an error naming %s and %s", err, c.tn, c.want)
			}
			if buf.Len() != 0 {
				t.Errorf("wrote %d bytes; want none", buf.Len())
			}
		})
	}
	if err := Write(failWriter{}, sample()); err == nil || !strings.Contains(err.Error(), "disk full") {
		t.Errorf("failing writer: got %v; want the writer's error", err)
	}
}

func TestNamesAndNumElements(t *testing.T) {
	f := sample()
	names := f.Names()
	for i := 1; i < len(names); i++ {
		if names[i-1] >= names[i] {
			t.Errorf("names not sorted: %v", names)
		}
	}
	for _, c := range []struct {
		shape []int
		want  int
	}{{nil, 1}, {[]int{0, 4}, 0}, {[]int{2, 3, 4}, 24}, {[]int{1 << 62, 4}, math.MaxInt}} {
		if got := (Tensor{Shape: c.shape}).NumElements(); got != c.want {
			t.Errorf("NumElements(%v): got %d; want %d", c.shape, got, c.want)
		}
	}
}

// FuzzParse checks that no input makes Parse panic, and that whatever it accepts writes back and parses again
// to the same tensors.
func FuzzParse(f *testing.F) {
	var buf bytes.Buffer
	Write(&buf, sample())
	f.Add(buf.Bytes())
	f.Add(craft(`{"w":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}`, seq(4)))
	f.Add(craft(`{"__metadata__":{"a":"b"}}`, nil))
	f.Fuzz(func(t *testing.T, b []byte) {
		file, err := Parse(b)
		if err != nil {
			return
		}
		for _, name := range file.Names() {
			tn := file.Tensors[name]
			tn.Float64s()
			tn.Int64s()
		}
		var out bytes.Buffer
		if err := Write(&out, file); err != nil {
			t.Fatalf("Write of a parsed file: %v", err)
		}
		again, err := Parse(out.Bytes())
		if err != nil {
			t.Fatalf("Parse of a written file: %v", err)
		}
		for _, name := range file.Names() {
			if !bytes.Equal(again.Tensors[name].Data, file.Tensors[name].Data) {
				t.Fatalf("%q changed in the round trip", name)
			}
		}
	})
}

// TestReadFileMapsPrivately: a file read is mapped copy-on-write, so writing to a tensor's data changes the
// tensor, never the file.
func TestReadFileMapsPrivately(t *testing.T) {
	path := filepath.Join(t.TempDir(), "w.safetensors")
	if err := WriteFile(path, &File{Tensors: map[string]Tensor{"w": FromFloat32([]int{2}, []float32{1, 2})}}); err != nil {
		t.Fatal(err)
	}
	before, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	f, err := ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	f.Tensors["w"].Data[0] ^= 0xff
	after, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(before, after) {
		t.Fatal("writing to a tensor read from the file changed the file")
	}
}
