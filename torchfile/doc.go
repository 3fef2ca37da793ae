// Package torchfile reads PyTorch checkpoints written by torch.save (the ".bin" files of Hugging Face
// repositories such as LLaVA-1.5's pytorch_model-0000k-of-00002.bin shards and CLIP's pytorch_model.bin) into
// safetensors.Tensor values, without running any of the code a pickle can name.
//
// # Format
//
// Since PyTorch 1.6, torch.save writes a ZIP archive whose entries share one folder name: <name>/data.pkl is
// a pickle of the saved object, <name>/data/<key> holds the raw bytes of one storage, stored uncompressed,
// and <name>/byteorder (PyTorch ≥ 2.1, "little" or "big"; little-endian when absent) says how they are laid
// out. The pickle of a state_dict is a dict or collections.OrderedDict of names to tensors; each tensor is a
// call of torch._utils._rebuild_tensor_v2(storage, storage_offset, size, stride, requires_grad, hooks) whose
// storage is a persistent id ("storage", storage class, key, location, numel) naming data/<key>. ReadFile
// returns those tensors, each made contiguous from its storage, offset and strides. The legacy format (a
// bare pickle stream, before PyTorch 1.6) and TorchScript archives are refused with ErrFormat, and so is an
// archive whose entries are compressed, which torch.save never writes. Entries' CRC-32 checksums are not
// verified (that would read every byte of a multi-gigabyte file before its first use); a corrupted storage
// gives wrong values, as a corrupted safetensors file does.
//
// # Safety
//
// Unpickling runs code: a pickle's GLOBAL or STACK_GLOBAL opcode names any importable callable (os.system,
// builtins.eval) and REDUCE calls it. A checkpoint downloaded from the internet must therefore be read by an
// interpreter that can call nothing but what a tensor state_dict needs. This package has its own small
// pickle interpreter (the binary opcodes of protocols 2 to 5 that torch.save writes) rather than
// github.com/nlpodyssey/gopickle (v0.2.0), whose code was read for this decision:
//
//   - gopickle allocates buffers of the lengths the pickle claims (BINBYTES8, BINUNICODE8, FRAME: up to 2^63
//     bytes) before reading them, so a 20-byte pickle can make the process panic or die of memory
//     exhaustion, and no hook lets a caller check the length first;
//   - its class lookup resolves collections.OrderedDict, __builtin__.object and copy_reg._reconstructor
//     itself, before the caller's FindClass hook is consulted, so an allow-list installed through that hook
//     cannot be complete (and without the hook any unknown global is accepted, as a generic class that
//     NEWOBJ and OBJ instantiate);
//   - a GET of an unset memo slot pushes nil instead of failing, and its pytorch package reads storages
//     into freshly allocated []float32 of the claimed size, through os.Open.
//
// Here every global is checked against an allow-list when the GLOBAL or STACK_GLOBAL opcode is read,
// before anything could be called: collections.OrderedDict, torch.Size, torch._utils._rebuild_tensor,
// _rebuild_tensor_v2, _rebuild_tensor_v3, _rebuild_parameter and _rebuild_parameter_with_state, the typed
// storage classes of the element types safetensors knows (torch.FloatStorage, HalfStorage, BFloat16Storage,
// DoubleStorage, LongStorage, IntStorage, ByteStorage, BoolStorage), torch.UntypedStorage, and the dtypes
// torch.float32 … torch.bool. Any other global (os.system, posix.system, builtins.eval, subprocess.Popen, an
// unknown storage class) is refused with an error wrapping ErrUnsafe that names the file and the global, and
// the extension registry and the opcodes that build arbitrary objects are refused too. The allowed globals
// are implemented in Go and only build values; nothing is ever executed. PyTorch's storage classes and
// dtypes of element types safetensors.Tensor cannot hold (int8, int16, complex, float8, quantized) are
// harmless but unsupported: they give an ErrFormat error that names them.
//
// Nothing a hostile file claims is allocated before it is checked: string and byte lengths against the
// bytes left in the pickle, storages against their archive entries and, together, against the caller's
// limit, shapes against a fixed number of dimensions and their storage. The interpreter's stack, memo and
// containers grow by at most one value per opcode read, and no value is ever copied whole, so the memory
// it uses is proportional to the pickle's length.
//
// # Memory
//
// On Unix systems the file is memory-mapped (private, copy-on-write) and the returned tensors' Data alias
// the mapping when their storage is little-endian, as torch.save writes it: loading a 14 GB checkpoint
// costs address space and page cache, not 14 GB of heap. The mapping lives for the rest of the process
// (it is released at once only when the read fails or no tensor aliases it), so the Data stay valid
// however long the caller keeps them; writing to Data changes the process's private copy, never the file.
// As with every memory-mapped loader, the file must not be truncated or rewritten in place while the
// tensors are in use (replacing it by a rename is fine). Where mapping is unavailable, and for big-endian
// storages, the bytes are copied.
package torchfile

import (
	"errors"

	"github.com/flextrain/flextrain/safetensors"
)

// ErrFormat is wrapped by every error that reports a malformed or unsupported file (a bad archive, a
// pickle that is not a tensor state_dict, a storage shorter than its claim, a non-contiguous tensor), so
// callers can tell a bad file from an I/O failure.
var ErrFormat = errors.New("malformed torch.save checkpoint")

// ErrUnsafe is wrapped by the error of a pickle that names a global outside the allow-list (see the
// package documentation): a file that would run code if Python's pickle loaded it.
var ErrUnsafe = errors.New("unsafe pickle")

// ErrLegacy is wrapped, with ErrFormat, by the error for a checkpoint in the pre-1.6 torch.save format.
var ErrLegacy = errors.New("legacy torch.save format, re-save with PyTorch ≥ 1.6 or convert to safetensors")

// ErrTooLarge is wrapped by the error of a file, a set of shards or a storage that holds or claims more
// bytes than the caller's limit. It is safetensors.ErrTooLarge, so a caller that reads both formats tests
// one error.
var ErrTooLarge = safetensors.ErrTooLarge
