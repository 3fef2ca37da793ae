package torchfile

import (
	"encoding/binary"
	"fmt"
	"strconv"
	"strings"
	"unicode/utf8"
)

// tuple is a Python tuple; immutable, so shared freely.
type tuple []any

// list is a Python list; a pointer, since APPEND changes it in place wherever it is referenced.
type list struct{ items []any }

// dict is a Python dict or collections.OrderedDict, keyed by strings, integers or booleans, in insertion
// order.
type dict struct {
	ordered bool
	keys    []any
	vals    []any
	index   map[any]int
}

// persistentLoader resolves the persistent id of a BINPERSID opcode (torch.save's storage references).
type persistentLoader func(pid any) (any, error)

// machine is the pickle interpreter: the opcodes still to run, the stack with the positions of its marks,
// the memo and the loader of persistent ids.
type machine struct {
	p     []byte
	pos   int
	stack []any
	marks []int
	memo  map[uint32]any
	load  persistentLoader
}

// unpickle runs the pickle p and returns the value its STOP opcode pops. Only the opcodes of the ops table
// exist; any other is an error wrapping ErrFormat.
func unpickle(p []byte, load persistentLoader) (any, error) {
	m := &machine{p: p, memo: map[uint32]any{}, load: load}
	for m.pos < len(m.p) {
		at, op := m.pos, m.p[m.pos]
		m.pos++
		if op == opStop {
			return m.pop()
		}
		if err := m.step(op); err != nil {
			return nil, fmt.Errorf("data.pkl byte %d (opcode 0x%02x): %w", at, op, err)
		}
	}
	return nil, formatErrorf("data.pkl ends without a STOP opcode")
}

// step runs one opcode whose argument bytes follow m.pos.
func (m *machine) step(op byte) error {
	run := ops[op]
	if run == nil {
		return formatErrorf("unsupported pickle opcode")
	}
	return run(m)
}

// formatErrorf builds an error wrapping ErrFormat.
func formatErrorf(format string, a ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{ErrFormat}, a...)...)
}

// take consumes the next n bytes of the pickle, refusing a length longer than what is left before anything
// is allocated for it.
func (m *machine) take(n uint64) ([]byte, error) {
	if n > uint64(len(m.p)-m.pos) {
		return nil, formatErrorf("argument of %d bytes runs past the end of the %d-byte pickle", n, len(m.p))
	}
	b := m.p[m.pos : m.pos+int(n)]
	m.pos += int(n)
	return b, nil
}

// uint reads an n-byte little-endian unsigned argument (n is 1, 2, 4 or 8).
func (m *machine) uint(n uint64) (uint64, error) {
	b, err := m.take(n)
	if err != nil {
		return 0, err
	}
	var buf [8]byte
	copy(buf[:], b)
	return binary.LittleEndian.Uint64(buf[:]), nil
}

// sized reads an n-byte length and then that many bytes.
func (m *machine) sized(n uint64) ([]byte, error) {
	size, err := m.uint(n)
	if err != nil {
		return nil, err
	}
	return m.take(size)
}

// text reads an n-byte length and that many bytes of UTF-8 text.
func (m *machine) text(n uint64) (string, error) {
	b, err := m.sized(n)
	if err != nil {
		return "", err
	}
	if !utf8.Valid(b) {
		return "", formatErrorf("string is not valid UTF-8")
	}
	return string(b), nil
}

// line reads text up to a newline, as the GLOBAL opcode's arguments are written.
func (m *machine) line() (string, error) {
	for i := m.pos; i < len(m.p); i++ {
		if m.p[i] == '\n' {
			s := string(m.p[m.pos:i])
			m.pos = i + 1
			return s, nil
		}
	}
	return "", formatErrorf("line runs past the end of the pickle")
}

// base is the stack position of the topmost mark: what lies below it is out of reach until the mark is
// popped.
func (m *machine) base() int {
	if len(m.marks) == 0 {
		return 0
	}
	return m.marks[len(m.marks)-1]
}

func (m *machine) push(v any) { m.stack = append(m.stack, v) }

// pop removes the top of the stack, above the topmost mark.
func (m *machine) pop() (any, error) {
	if len(m.stack) <= m.base() {
		return nil, formatErrorf("pop from an empty stack")
	}
	v := m.stack[len(m.stack)-1]
	m.stack = m.stack[:len(m.stack)-1]
	return v, nil
}

// popN removes the top n values, returned in stack order in a new slice.
func (m *machine) popN(n int) ([]any, error) {
	if len(m.stack)-m.base() < n {
		return nil, formatErrorf("pop of %d values from a stack of %d", n, len(m.stack)-m.base())
	}
	vs := append([]any(nil), m.stack[len(m.stack)-n:]...)
	m.stack = m.stack[:len(m.stack)-n]
	return vs, nil
}

// top returns the top of the stack without removing it.
func (m *machine) top() (any, error) {
	if len(m.stack) <= m.base() {
		return nil, formatErrorf("empty stack")
	}
	return m.stack[len(m.stack)-1], nil
}

// popMark removes the topmost mark and returns the values above it, which stay valid only until the next
// push: callers use them at once or copy them.
func (m *machine) popMark() ([]any, error) {
	if len(m.marks) == 0 {
		return nil, formatErrorf("no mark on the stack")
	}
	b := m.base()
	m.marks = m.marks[:len(m.marks)-1]
	vs := m.stack[b:]
	m.stack = m.stack[:b]
	return vs, nil
}

// newDict returns an empty dict or OrderedDict.
func newDict(ordered bool) *dict { return &dict{ordered: ordered, index: map[any]int{}} }

// maxKey caps the length of a dict key or a storage key, so that hashing keys costs time proportional to
// the pickle (a state_dict's names are a few hundred bytes at most).
const maxKey = 4 << 10

// set adds a key, refusing a key Python could not hash here, a longer one than maxKey and a repeated one (a
// pickled dict never repeats a key).
func (d *dict) set(k, v any) error {
	switch k := k.(type) {
	case string:
		if len(k) > maxKey {
			return formatErrorf("dict key of %d bytes, more than %d", len(k), maxKey)
		}
	case int64, bool:
	default:
		return formatErrorf("a dict key that is %s", aType(k))
	}
	if _, dup := d.index[k]; dup {
		return formatErrorf("dict key %s repeated", scalar(k))
	}
	d.index[k] = len(d.keys)
	d.keys = append(d.keys, k)
	d.vals = append(d.vals, v)
	return nil
}

// aType names a value's Python type, with its article, for an error message.
func aType(v any) string {
	switch v := v.(type) {
	case nil:
		return "None"
	case bool:
		return "a bool"
	case int64:
		return "an int"
	case float64:
		return "a float"
	case string:
		return "a str"
	case []byte:
		return "bytes"
	case tuple:
		return "a tuple"
	case *list:
		return "a list"
	case *dict:
		return "a dict"
	case *tensorRef:
		return "a tensor"
	case *storage:
		return "a storage"
	case storageType:
		return "the class " + v.name
	case dtype:
		return "a dtype"
	case function:
		return "the function " + v.name
	}
	return fmt.Sprintf("a %T", v)
}

// short quotes a string for an error message, cut to a readable length.
func short(s string) string {
	if len(s) > 100 {
		s = strings.ToValidUTF8(s[:100], "") + "…"
	}
	return strconv.Quote(s)
}

// scalar describes a value for an error message: a scalar's value, only the type of anything else (printing
// a tuple could take time exponential in the pickle's length, since tuples can nest one shared tuple twice).
func scalar(v any) string {
	switch v := v.(type) {
	case string:
		return short(v)
	case int64, bool, float64:
		return fmt.Sprint(v)
	}
	return aType(v)
}
