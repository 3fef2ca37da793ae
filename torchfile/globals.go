package torchfile

import (
	"fmt"

	"github.com/flextrain/flextrain/safetensors"
)

// callable is an allowed global that REDUCE may call: Go code that builds a value and does nothing else.
type callable interface {
	call(args tuple) (any, error)
}

// storageType is a storage class (torch.FloatStorage, …, torch.UntypedStorage): the element type of a
// persistent storage reference.
type storageType struct {
	name  string
	dtype safetensors.DType
}

// dtype is a torch.dtype global (torch.float32, …), an argument of _rebuild_tensor_v3.
type dtype struct{ dtype safetensors.DType }

// function is an allowed callable global.
type function struct {
	name string
	fn   func(args tuple) (any, error)
}

func (f function) call(args tuple) (any, error) {
	v, err := f.fn(args)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", f.name, err)
	}
	return v, nil
}

// globals is the allow-list: the only globals a pickle may name, by "module.name".
var globals = map[string]any{
	"collections.OrderedDict":                    function{"collections.OrderedDict", newOrderedDict},
	"torch.Size":                                 function{"torch.Size", newSize},
	"torch._utils._rebuild_tensor":               function{"torch._utils._rebuild_tensor", rebuildTensor},
	"torch._utils._rebuild_tensor_v2":            function{"torch._utils._rebuild_tensor_v2", rebuildTensorV2},
	"torch._utils._rebuild_tensor_v3":            function{"torch._utils._rebuild_tensor_v3", rebuildTensorV3},
	"torch._utils._rebuild_parameter":            function{"torch._utils._rebuild_parameter", rebuildParameter},
	"torch._utils._rebuild_parameter_with_state": function{"torch._utils._rebuild_parameter_with_state", rebuildParameter},
	"torch.FloatStorage":                         storageType{"torch.FloatStorage", safetensors.F32},
	"torch.HalfStorage":                          storageType{"torch.HalfStorage", safetensors.F16},
	"torch.BFloat16Storage":                      storageType{"torch.BFloat16Storage", safetensors.BF16},
	"torch.DoubleStorage":                        storageType{"torch.DoubleStorage", safetensors.F64},
	"torch.LongStorage":                          storageType{"torch.LongStorage", safetensors.I64},
	"torch.IntStorage":                           storageType{"torch.IntStorage", safetensors.I32},
	"torch.ByteStorage":                          storageType{"torch.ByteStorage", safetensors.U8},
	"torch.BoolStorage":                          storageType{"torch.BoolStorage", safetensors.BOOL},
	"torch.UntypedStorage":                       storageType{"torch.UntypedStorage", safetensors.U8},
	"torch.storage.UntypedStorage":               storageType{"torch.storage.UntypedStorage", safetensors.U8},
	"torch.float32":                              dtype{safetensors.F32},
	"torch.float16":                              dtype{safetensors.F16},
	"torch.bfloat16":                             dtype{safetensors.BF16},
	"torch.float64":                              dtype{safetensors.F64},
	"torch.int64":                                dtype{safetensors.I64},
	"torch.int32":                                dtype{safetensors.I32},
	"torch.uint8":                                dtype{safetensors.U8},
	"torch.bool":                                 dtype{safetensors.BOOL},
}

// unsupported names the element type of the harmless torch globals (storage classes and dtypes) whose
// tensors safetensors.Tensor cannot hold, so that a file using one gets an ErrFormat error that says so
// rather than ErrUnsafe.
var unsupported = map[string]string{
	"torch.CharStorage": "int8", "torch.ShortStorage": "int16", "torch.ComplexFloatStorage": "complex64",
	"torch.ComplexDoubleStorage": "complex128", "torch.QInt8Storage": "qint8", "torch.QUInt8Storage": "quint8",
	"torch.QInt32Storage": "qint32", "torch.QUInt4x2Storage": "quint4x2", "torch.QUInt2x4Storage": "quint2x4",
	"torch.int8": "int8", "torch.int16": "int16", "torch.uint16": "uint16", "torch.uint32": "uint32",
	"torch.uint64": "uint64", "torch.complex64": "complex64", "torch.complex128": "complex128",
	"torch.float8_e4m3fn": "float8_e4m3fn", "torch.float8_e5m2": "float8_e5m2",
}

// resolve returns the allowed global module.name, or an error naming it: ErrFormat for a known torch type
// of unsupported elements, ErrUnsafe for anything else.
func resolve(module, name string) (any, error) {
	full := module + "." + name
	if v, ok := globals[full]; ok {
		return v, nil
	}
	if elem, ok := unsupported[full]; ok {
		return nil, formatErrorf("%s: tensors of %s elements are not supported", full, elem)
	}
	return nil, unsafeGlobal(module, name)
}

// unsafeGlobal is the error for a global outside the allow-list.
func unsafeGlobal(module, name string) error {
	return unsafeErrorf("refused global %s (not one a tensor state_dict needs); nothing was called", shortName(module, name))
}

// shortName is module.name for an error message, cut to a readable length.
func shortName(module, name string) string {
	s := module + "." + name
	if len(s) <= 100 {
		return s
	}
	return short(s)
}

// unsafeErrorf builds an error wrapping ErrUnsafe.
func unsafeErrorf(format string, a ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{ErrUnsafe}, a...)...)
}

// newOrderedDict is collections.OrderedDict(): pickle passes no arguments and adds the items afterwards.
func newOrderedDict(args tuple) (any, error) {
	if len(args) != 0 {
		return nil, formatErrorf("%d arguments, want none", len(args))
	}
	return newDict(true), nil
}

// newSize is torch.Size(tuple): the tuple itself, shared, not copied (tuples never change).
func newSize(args tuple) (any, error) {
	if len(args) != 1 {
		return nil, formatErrorf("%d arguments, want 1", len(args))
	}
	t, ok := args[0].(tuple)
	if !ok {
		return nil, formatErrorf("argument is %s, want a tuple", aType(args[0]))
	}
	return t, nil
}

// tensorRef is a rebuilt tensor before it is checked against its storage and materialised: its storage,
// element type, storage offset in elements, and its size and stride tuples as pickled.
type tensorRef struct {
	storage *storage
	dtype   safetensors.DType
	offset  int64
	size    tuple
	stride  tuple
}

// rebuildTensor is torch._utils._rebuild_tensor(storage, storage_offset, size, stride).
func rebuildTensor(args tuple) (any, error) {
	if len(args) != 4 {
		return nil, formatErrorf("%d arguments, want 4", len(args))
	}
	return newTensorRef(args, "")
}

// rebuildTensorV2 is torch._utils._rebuild_tensor_v2(storage, storage_offset, size, stride, requires_grad,
// backward_hooks[, metadata]); requires_grad, the hooks and the metadata do not matter here.
func rebuildTensorV2(args tuple) (any, error) {
	if len(args) != 6 && len(args) != 7 {
		return nil, formatErrorf("%d arguments, want 6 or 7", len(args))
	}
	return newTensorRef(args[:4], "")
}

// rebuildTensorV3 is torch._utils._rebuild_tensor_v3(storage, storage_offset, size, stride, requires_grad,
// backward_hooks, dtype[, metadata]), which PyTorch 2 writes for an untyped storage: the dtype is explicit.
func rebuildTensorV3(args tuple) (any, error) {
	if len(args) != 7 && len(args) != 8 {
		return nil, formatErrorf("%d arguments, want 7 or 8", len(args))
	}
	d, ok := args[6].(dtype)
	if !ok {
		return nil, formatErrorf("dtype argument is %s", aType(args[6]))
	}
	return newTensorRef(args[:4], d.dtype)
}

// rebuildParameter is torch._utils._rebuild_parameter(data, requires_grad, backward_hooks) and
// _rebuild_parameter_with_state(…, state): an nn.Parameter is its data here.
func rebuildParameter(args tuple) (any, error) {
	if len(args) != 3 && len(args) != 4 {
		return nil, formatErrorf("%d arguments, want 3 or 4", len(args))
	}
	t, ok := args[0].(*tensorRef)
	if !ok {
		return nil, formatErrorf("data is %s, want a tensor", aType(args[0]))
	}
	return t, nil
}

// newTensorRef checks the types of (storage, storage_offset, size, stride) and keeps them; dt overrides the
// storage's element type when it is not empty. The values are checked when the tensor is materialised.
func newTensorRef(args tuple, dt safetensors.DType) (*tensorRef, error) {
	st, ok := args[0].(*storage)
	if !ok {
		return nil, formatErrorf("storage argument is %s", aType(args[0]))
	}
	offset, ok := args[1].(int64)
	if !ok {
		return nil, formatErrorf("storage_offset argument is %s", aType(args[1]))
	}
	size, ok1 := args[2].(tuple)
	stride, ok2 := args[3].(tuple)
	if !ok1 || !ok2 {
		return nil, formatErrorf("size and stride arguments are %s and %s, want tuples", aType(args[2]), aType(args[3]))
	}
	if dt == "" {
		dt = st.dtype
	}
	return &tensorRef{storage: st, dtype: dt, offset: offset, size: size, stride: stride}, nil
}
