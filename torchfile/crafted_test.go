package torchfile

import (
	"encoding/binary"
	"math"
	"slices"
	"testing"

	"github.com/x448/float16"

	"github.com/flextrain/flextrain/safetensors"
)

// wantT is an expected tensor of a crafted archive: dtype, shape and values as float64.
type wantT struct {
	dtype  safetensors.DType
	shape  []int
	values []float64
}

// halves encodes float16 values in the given byte order.
func halves(order binary.AppendByteOrder, vs ...float32) []byte {
	var b []byte
	for _, v := range vs {
		b = order.AppendUint16(b, float16.Fromfloat32(v).Bits())
	}
	return b
}

// float32s encodes float32 values in the given byte order.
func float32s(order binary.AppendByteOrder, vs ...float32) []byte {
	var b []byte
	for _, v := range vs {
		b = order.AppendUint32(b, math.Float32bits(v))
	}
	return b
}

// orderedDict pushes collections.OrderedDict().
func (p *pickler) orderedDict() *pickler {
	return p.global("collections", "OrderedDict").op(opEmptyTuple, opReduce)
}

// persistent pushes the storage reference ("storage", torch.<class>, key, "cpu", numel) resolved.
func (p *pickler) persistent(class, key string, numel int64) *pickler {
	return p.op(opMark).str("storage").global("torch", class).str(key).str("cuda:0").int(numel).op(opTuple, opBinPersID)
}

// bigEndian is an archive written on a big-endian machine: byteorder "big", storages byte-swapped.
func bigEndian(t testing.TB) []byte {
	p := newPickle(2).op(opEmptyDict, opMark)
	p.str("f").tensor("FloatStorage", "0", 2, 0, []int64{2}, []int64{1})
	p.str("h").tensor("HalfStorage", "1", 3, 1, []int64{2}, []int64{1})
	p.str("h3").tensor("HalfStorage", "1", 3, 0, []int64{3}, []int64{1})
	p.str("l").tensor("LongStorage", "2", 1, 0, []int64{}, []int64{})
	p.str("b").tensor("ByteStorage", "3", 2, 0, []int64{2}, []int64{1})
	be := binary.BigEndian
	return torchArchive(t, p.op(opSetItems).done(), map[string][]byte{
		"0": float32s(be, 1.5, -2), "1": halves(be, 0.5, 1, -3),
		"2": be.AppendUint64(nil, uint64(math.MaxUint64-4)), "3": {7, 200},
	}, "byteorder", "big")
}

// otherRebuilds uses _rebuild_tensor_v3 on an untyped storage, _rebuild_tensor, torch.Size,
// _rebuild_parameter_with_state, a dict built by DICT, and a tensor stored in the memo and shared.
func otherRebuilds(t *testing.T) []byte {
	p := newPickle(2).op(opMark).str("v3").global("torch._utils", "_rebuild_tensor_v3").op(opMark)
	p.persistent("UntypedStorage", "u", 8).int(1).ints(2).ints(1).op(opNewFalse).orderedDict().global("torch", "float16").op(opTuple, opReduce)
	p.str("v1").global("torch._utils", "_rebuild_tensor").op(opMark)
	p.persistent("FloatStorage", "f", 4).int(0).global("torch", "Size").ints(2, 2).op(opTuple1, opReduce).ints(2, 1).op(opTuple, opReduce)
	p.op(opLongBinPut, 0, 0, 1, 0)
	p.str("param").global("torch._utils", "_rebuild_parameter_with_state").op(opMark)
	p.tensor("IntStorage", "i", 2, 0, []int64{2}, []int64{1}).op(opNewTrue).orderedDict().op(opEmptyDict, opTuple, opReduce)
	p.str("tied").op(opLongBinGet, 0, 0, 1, 0)
	return torchArchive(t, p.op(opDict).done(), map[string][]byte{
		"u": halves(binary.LittleEndian, 9, 0.25, -1.5, 4), "f": float32s(binary.LittleEndian, 1, 2, 3, 4),
		"i": binary.LittleEndian.AppendUint32(binary.LittleEndian.AppendUint32(nil, 5), math.MaxUint32),
	})
}

func TestReadFileCrafted(t *testing.T) {
	v1 := wantT{safetensors.F32, []int{2, 2}, []float64{1, 2, 3, 4}}
	for _, c := range []struct {
		name    string
		archive []byte
		want    map[string]wantT
	}{
		{"big-endian", bigEndian(t), map[string]wantT{
			"f": {safetensors.F32, []int{2}, []float64{1.5, -2}}, "h": {safetensors.F16, []int{2}, []float64{1, -3}},
			"h3": {safetensors.F16, []int{3}, []float64{0.5, 1, -3}}, "l": {safetensors.I64, []int{}, []float64{-5}},
			"b": {safetensors.U8, []int{2}, []float64{7, 200}},
		}},
		{"other rebuilds", otherRebuilds(t), map[string]wantT{
			"v3": {safetensors.F16, []int{2}, []float64{0.25, -1.5}}, "v1": v1, "tied": v1,
			"param": {safetensors.I32, []int{2}, []float64{5, -1}},
		}},
	} {
		t.Run(c.name, func(t *testing.T) {
			got, err := ReadFile(writeFile(t, "crafted.bin", c.archive), 0)
			if err != nil {
				t.Fatal(err)
			}
			if len(got) != len(c.want) {
				t.Errorf("got %d tensors; want %d", len(got), len(c.want))
			}
			for name, w := range c.want {
				if g := got[name]; g.DType != w.dtype || !slices.Equal(g.Shape, w.shape) || !slices.Equal(asFloats(t, g), w.values) {
					t.Errorf("%s: got %s%v %v; want %s%v %v", name, g.DType, g.Shape, asFloats(t, g), w.dtype, w.shape, w.values)
				}
			}
		})
	}
}

// asFloats decodes any tensor's values to float64.
func asFloats(t *testing.T, g safetensors.Tensor) []float64 {
	if g.DType.IsFloat() {
		fs, err := g.Float64s()
		if err != nil {
			t.Fatal(err)
		}
		return fs
	}
	is, err := g.Int64s()
	if err != nil {
		t.Fatal(err)
	}
	out := make([]float64, len(is))
	for i, v := range is {
		out[i] = float64(v)
	}
	return out
}

// TestReadFileBigEndianCopiesOnce checks that views of a big-endian storage share one swapped copy.
func TestReadFileBigEndianCopiesOnce(t *testing.T) {
	got, err := ReadFile(writeFile(t, "be.bin", bigEndian(t)), 0)
	if err != nil {
		t.Fatal(err)
	}
	if base(got["h"]) != base(got["h3"])+2 {
		t.Error("h does not alias h3 at byte 2: the storage was swapped more than once")
	}
}

// TestDecodeReportsAliasing checks that decode reports whether a tensor aliases the file, which decides
// whether ReadFile keeps its mapping: yes for little-endian storages, no when all were swapped copies.
func TestDecodeReportsAliasing(t *testing.T) {
	for _, c := range []struct {
		order string
		want  bool
	}{{"little", true}, {"big", false}} {
		_, aliased, err := decode(torchArchive(t, oneTensor(4), storage16, "byteorder", c.order), 1<<20)
		if err != nil || aliased != c.want {
			t.Errorf("byteorder %s: got aliased %v, %v; want %v", c.order, aliased, err, c.want)
		}
	}
}
