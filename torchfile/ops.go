package torchfile

import (
	"encoding/binary"
	"math"
	"slices"
)

// The pickle opcodes torch.save writes (protocol 2 by default, 4 or 5 when asked), and those that are
// recognised only to be refused as unsafe.
const (
	opMark            = '('
	opStop            = '.'
	opPop             = '0'
	opPopMark         = '1'
	opBinBytes        = 'B'
	opShortBinBytes   = 'C'
	opBinFloat        = 'G'
	opBinInt          = 'J'
	opBinInt1         = 'K'
	opBinInt2         = 'M'
	opNone            = 'N'
	opBinPersID       = 'Q'
	opReduce          = 'R'
	opBinString       = 'T'
	opShortBinString  = 'U'
	opBinUnicode      = 'X'
	opAppend          = 'a'
	opBuild           = 'b'
	opGlobal          = 'c'
	opDict            = 'd'
	opAppends         = 'e'
	opBinGet          = 'h'
	opInst            = 'i'
	opLongBinGet      = 'j'
	opList            = 'l'
	opBinPut          = 'q'
	opLongBinPut      = 'r'
	opSetItem         = 's'
	opTuple           = 't'
	opSetItems        = 'u'
	opEmptyTuple      = ')'
	opEmptyList       = ']'
	opEmptyDict       = '}'
	opProto           = 0x80
	opExt1            = 0x82
	opExt2            = 0x83
	opExt4            = 0x84
	opTuple1          = 0x85
	opTuple2          = 0x86
	opTuple3          = 0x87
	opNewTrue         = 0x88
	opNewFalse        = 0x89
	opLong1           = 0x8a
	opLong4           = 0x8b
	opShortBinUnicode = 0x8c
	opBinUnicode8     = 0x8d
	opBinBytes8       = 0x8e
	opStackGlobal     = 0x93
	opMemoize         = 0x94
	opFrame           = 0x95
)

// ops runs each supported opcode; a nil entry is an unsupported one (the text opcodes of protocols 0 and 1,
// sets, out-of-band buffers, and NEWOBJ, OBJ and friends, which build arbitrary objects).
var ops = [256]func(*machine) error{
	opProto: (*machine).proto, opFrame: (*machine).frame,
	opMark: (*machine).mark, opPop: (*machine).popOne, opPopMark: (*machine).dropMark,
	opNone: pusher(nil), opNewTrue: pusher(true), opNewFalse: pusher(false),
	opBinInt: (*machine).binInt, opBinInt1: unsigned(1), opBinInt2: unsigned(2),
	opLong1: long(1), opLong4: long(4), opBinFloat: (*machine).binFloat,
	opBinUnicode: text(4), opShortBinUnicode: text(1), opBinUnicode8: text(8),
	opBinString: text(4), opShortBinString: text(1),
	opBinBytes: bytesOp(4), opShortBinBytes: bytesOp(1), opBinBytes8: bytesOp(8),
	opEmptyTuple: (*machine).emptyTuple, opTuple: (*machine).tuple,
	opTuple1: tupleN(1), opTuple2: tupleN(2), opTuple3: tupleN(3),
	opEmptyList: (*machine).emptyList, opList: (*machine).list,
	opAppend: (*machine).append, opAppends: (*machine).appends,
	opEmptyDict: (*machine).emptyDict, opDict: (*machine).dict,
	opSetItem: (*machine).setItem, opSetItems: (*machine).setItems,
	opGlobal: (*machine).global, opStackGlobal: (*machine).stackGlobal, opInst: (*machine).inst,
	opExt1: (*machine).ext, opExt2: (*machine).ext, opExt4: (*machine).ext,
	opReduce: (*machine).reduce, opBuild: (*machine).build, opBinPersID: (*machine).persID,
	opBinPut: put(1), opLongBinPut: put(4), opMemoize: (*machine).memoize,
	opBinGet: get(1), opLongBinGet: get(4),
}

// proto checks the protocol version: 2 to 5 (PROTO first appeared in protocol 2).
func (m *machine) proto() error {
	v, err := m.uint(1)
	if err == nil && (v < 2 || v > 5) {
		err = formatErrorf("pickle protocol %d, want 2 to 5", v)
	}
	return err
}

// frame checks a protocol-4 frame's length; frames only group opcodes, so the content is read as usual.
func (m *machine) frame() error {
	n, err := m.uint(8)
	if err == nil && n > uint64(len(m.p)-m.pos) {
		err = formatErrorf("frame of %d bytes runs past the end of the pickle", n)
	}
	return err
}

func (m *machine) mark() error {
	m.marks = append(m.marks, len(m.stack))
	return nil
}

// popOne discards the top of the stack, or the topmost mark when nothing lies above it (as Python does).
func (m *machine) popOne() error {
	if len(m.stack) > m.base() {
		_, err := m.pop()
		return err
	}
	return m.dropMark()
}

func (m *machine) dropMark() error {
	_, err := m.popMark()
	return err
}

// pusher returns an opcode that pushes a constant.
func pusher(v any) func(*machine) error {
	return func(m *machine) error { m.push(v); return nil }
}

// binInt pushes a 4-byte signed integer.
func (m *machine) binInt() error {
	v, err := m.uint(4)
	m.push(int64(int32(v)))
	return err
}

// unsigned returns an opcode that pushes an n-byte unsigned integer.
func unsigned(n uint64) func(*machine) error {
	return func(m *machine) error {
		v, err := m.uint(n)
		m.push(int64(v))
		return err
	}
}

// long returns the LONG1 or LONG4 opcode: an n-byte length, then a little-endian two's-complement integer
// of that many bytes, at most 8 here.
func long(n uint64) func(*machine) error {
	return func(m *machine) error {
		size, err := m.uint(n)
		if err != nil {
			return err
		}
		if size > 8 {
			return formatErrorf("integer of %d bytes does not fit in 64 bits", size)
		}
		b, err := m.take(size)
		m.push(twosComplement(b))
		return err
	}
}

// twosComplement decodes up to 8 little-endian bytes of a signed integer.
func twosComplement(b []byte) int64 {
	var v uint64
	for i, c := range b {
		v |= uint64(c) << (8 * i)
	}
	if n := len(b); n > 0 && n < 8 && b[n-1]&0x80 != 0 {
		v |= ^uint64(0) << (8 * n)
	}
	return int64(v)
}

// binFloat pushes an 8-byte big-endian float.
func (m *machine) binFloat() error {
	b, err := m.take(8)
	if err == nil {
		m.push(math.Float64frombits(binary.BigEndian.Uint64(b)))
	}
	return err
}

// text returns an opcode that pushes a string of UTF-8 bytes after an n-byte length.
func text(n uint64) func(*machine) error {
	return func(m *machine) error {
		s, err := m.text(n)
		m.push(s)
		return err
	}
}

// bytesOp returns an opcode that pushes bytes after an n-byte length (aliasing the pickle: never changed).
func bytesOp(n uint64) func(*machine) error {
	return func(m *machine) error {
		b, err := m.sized(n)
		m.push(b)
		return err
	}
}

func (m *machine) emptyTuple() error {
	m.push(tuple{})
	return nil
}

// tuple pushes the values above the topmost mark as a tuple.
func (m *machine) tuple() error {
	vs, err := m.popMark()
	if err == nil {
		m.push(tuple(slices.Clone(vs)))
	}
	return err
}

// tupleN returns the TUPLE1, TUPLE2 or TUPLE3 opcode.
func tupleN(n int) func(*machine) error {
	return func(m *machine) error {
		vs, err := m.popN(n)
		if err == nil {
			m.push(tuple(vs))
		}
		return err
	}
}

func (m *machine) emptyList() error {
	m.push(&list{})
	return nil
}

// list pushes the values above the topmost mark as a list.
func (m *machine) list() error {
	vs, err := m.popMark()
	if err == nil {
		m.push(&list{items: slices.Clone(vs)})
	}
	return err
}

// append pops a value and appends it to the list below it.
func (m *machine) append() error {
	v, err := m.pop()
	if err != nil {
		return err
	}
	l, err := topAs[*list](m, "append to")
	if err == nil {
		l.items = append(l.items, v)
	}
	return err
}

// appends appends the values above the topmost mark to the list below it.
func (m *machine) appends() error {
	vs, err := m.popMark()
	if err != nil {
		return err
	}
	l, err := topAs[*list](m, "append to")
	if err == nil {
		l.items = append(l.items, vs...)
	}
	return err
}

// topAs returns the value on top of the stack as a T, or an error saying that op cannot be done to it.
func topAs[T any](m *machine, op string) (T, error) {
	var zero T
	v, err := m.top()
	if err != nil {
		return zero, err
	}
	t, ok := v.(T)
	if !ok {
		return zero, formatErrorf("%s %s", op, aType(v))
	}
	return t, nil
}

func (m *machine) emptyDict() error {
	m.push(newDict(false))
	return nil
}

// dict pushes a dict of the key, value pairs above the topmost mark.
func (m *machine) dict() error {
	vs, err := m.popMark()
	if err != nil {
		return err
	}
	d := newDict(false)
	if err := d.setPairs(vs); err != nil {
		return err
	}
	m.push(d)
	return nil
}

// setItem pops a key and a value and sets them in the dict below.
func (m *machine) setItem() error {
	kv, err := m.popN(2)
	if err != nil {
		return err
	}
	d, err := topAs[*dict](m, "set an item of")
	if err != nil {
		return err
	}
	return d.set(kv[0], kv[1])
}

// setItems sets the key, value pairs above the topmost mark in the dict below it.
func (m *machine) setItems() error {
	vs, err := m.popMark()
	if err != nil {
		return err
	}
	d, err := topAs[*dict](m, "set an item of")
	if err != nil {
		return err
	}
	return d.setPairs(vs)
}

// setPairs sets alternating keys and values.
func (d *dict) setPairs(vs []any) error {
	if len(vs)%2 != 0 {
		return formatErrorf("odd number (%d) of dict keys and values", len(vs))
	}
	for i := 0; i < len(vs); i += 2 {
		if err := d.set(vs[i], vs[i+1]); err != nil {
			return err
		}
	}
	return nil
}

// global pushes the allowed global named by two lines of text, or refuses it.
func (m *machine) global() error {
	module, err := m.line()
	if err != nil {
		return err
	}
	name, err := m.line()
	if err != nil {
		return err
	}
	v, err := resolve(module, name)
	m.push(v)
	return err
}

// stackGlobal pushes the allowed global whose module and name are the two strings on the stack.
func (m *machine) stackGlobal() error {
	vs, err := m.popN(2)
	if err != nil {
		return err
	}
	module, ok1 := vs[0].(string)
	name, ok2 := vs[1].(string)
	if !ok1 || !ok2 {
		return formatErrorf("STACK_GLOBAL of %s and %s, want two str", aType(vs[0]), aType(vs[1]))
	}
	v, err := resolve(module, name)
	m.push(v)
	return err
}

// inst refuses INST, which instantiates the class its two lines name: a state_dict never uses it.
func (m *machine) inst() error {
	module, err := m.line()
	if err != nil {
		return err
	}
	name, err := m.line()
	if err != nil {
		return err
	}
	return unsafeGlobal(module, name)
}

// ext refuses the extension registry opcodes, which name a global through a code registered at run time.
func (m *machine) ext() error {
	return unsafeErrorf("extension registry code (EXT1/EXT2/EXT4) names a global this reader cannot check")
}

// reduce calls an allowed callable with the tuple of arguments above it.
func (m *machine) reduce() error {
	vs, err := m.popN(2)
	if err != nil {
		return err
	}
	fn, ok := vs[0].(callable)
	if !ok {
		return formatErrorf("REDUCE calls %s", aType(vs[0]))
	}
	args, ok := vs[1].(tuple)
	if !ok {
		return formatErrorf("REDUCE arguments are %s, want a tuple", aType(vs[1]))
	}
	v, err := fn.call(args)
	m.push(v)
	return err
}

// build sets an object's state: only an OrderedDict's (a state_dict's _metadata), which is dropped.
func (m *machine) build() error {
	state, err := m.pop()
	if err != nil {
		return err
	}
	v, err := m.top()
	if err != nil {
		return err
	}
	if d, ok := v.(*dict); !ok || !d.ordered {
		return formatErrorf("BUILD of %s", aType(v))
	}
	if _, ok := state.(*dict); !ok && state != nil {
		return formatErrorf("BUILD of an OrderedDict with %s state", aType(state))
	}
	return nil
}

// persID resolves the persistent id on the stack (a storage reference) through the machine's loader.
func (m *machine) persID() error {
	pid, err := m.pop()
	if err != nil {
		return err
	}
	v, err := m.load(pid)
	m.push(v)
	return err
}

// put returns the BINPUT or LONG_BINPUT opcode, which stores the top of the stack in the memo.
func put(n uint64) func(*machine) error {
	return func(m *machine) error {
		i, err := m.uint(n)
		if err != nil {
			return err
		}
		return m.store(uint32(i))
	}
}

// memoize stores the top of the stack in the next memo slot.
func (m *machine) memoize() error {
	if uint64(len(m.memo)) >= math.MaxUint32 {
		return formatErrorf("memo full")
	}
	return m.store(uint32(len(m.memo)))
}

func (m *machine) store(i uint32) error {
	v, err := m.top()
	if err == nil {
		m.memo[i] = v
	}
	return err
}

// get returns the BINGET or LONG_BINGET opcode, which pushes a value of the memo.
func get(n uint64) func(*machine) error {
	return func(m *machine) error {
		i, err := m.uint(n)
		if err != nil {
			return err
		}
		v, ok := m.memo[uint32(i)]
		if !ok {
			return formatErrorf("memo slot %d is empty", i)
		}
		m.push(v)
		return nil
	}
}
