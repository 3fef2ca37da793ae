package tokenizer

import (
	"encoding/binary"
	"fmt"
)

// Protocol buffer wire types (the low 3 bits of a field's tag).
const (
	wireVarint  = 0
	wireFixed64 = 1
	wireBytes   = 2
	wireFixed32 = 5
)

// protoField is one field of an encoded protocol buffer message: a varint or fixed-size number in num, or the
// contents of a length-delimited field (a string, bytes, an embedded message) in data, which aliases the input.
type protoField struct {
	num  int
	wire int
	val  uint64
	data []byte
}

// eachField calls fn on every field of the encoded message b in order, and stops at the first error. Groups
// (wire types 3 and 4, deprecated and absent from SentencePiece models) are refused. Nothing is allocated:
// the cost of a hostile message is one pass over its bytes.
func eachField(b []byte, fn func(protoField) error) error {
	for len(b) > 0 {
		f, n, err := nextField(b)
		if err != nil {
			return err
		}
		if err := fn(f); err != nil {
			return err
		}
		b = b[n:]
	}
	return nil
}

// nextField decodes the field at the start of b and returns how many bytes it spans.
func nextField(b []byte) (protoField, int, error) {
	tag, n := binary.Uvarint(b)
	if n <= 0 {
		return protoField{}, 0, fmt.Errorf("truncated or overlong field tag")
	}
	f := protoField{num: int(tag >> 3), wire: int(tag & 7)}
	if tag>>3 == 0 || tag>>3 > 1<<29-1 {
		return f, 0, fmt.Errorf("field number %d", tag>>3)
	}
	m, err := f.readValue(b[n:])
	return f, n + m, err
}

// readValue fills f's value from b, which starts right after the tag, and returns the bytes it took.
func (f *protoField) readValue(b []byte) (int, error) {
	switch f.wire {
	case wireVarint:
		return f.readVarint(b)
	case wireFixed64:
		return f.readFixed(b, 8)
	case wireFixed32:
		return f.readFixed(b, 4)
	case wireBytes:
		return f.readBytes(b)
	}
	return 0, fmt.Errorf("field %d: wire type %d", f.num, f.wire)
}

func (f *protoField) readVarint(b []byte) (int, error) {
	v, n := binary.Uvarint(b)
	if n <= 0 {
		return 0, fmt.Errorf("field %d: truncated or overlong varint", f.num)
	}
	f.val = v
	return n, nil
}

// readFixed reads a little-endian fixed32 or fixed64 (size 4 or 8).
func (f *protoField) readFixed(b []byte, size int) (int, error) {
	if len(b) < size {
		return 0, fmt.Errorf("field %d: truncated fixed-size value", f.num)
	}
	if size == 4 {
		f.val = uint64(binary.LittleEndian.Uint32(b))
	} else {
		f.val = binary.LittleEndian.Uint64(b)
	}
	return size, nil
}

func (f *protoField) readBytes(b []byte) (int, error) {
	l, n := binary.Uvarint(b)
	if n <= 0 || l > uint64(len(b)-n) {
		return 0, fmt.Errorf("field %d: length runs past the end of the message", f.num)
	}
	f.data = b[n : n+int(l)]
	return n + int(l), nil
}

// want checks that a known field has the wire type its declaration gives it.
func (f protoField) want(wire int) error {
	if f.wire != wire {
		return fmt.Errorf("field %d has wire type %d; want %d", f.num, f.wire, wire)
	}
	return nil
}

// int32Val is a varint field declared int32: negative values are sign-extended to 64 bits on the wire.
func (f protoField) int32Val() int32 { return int32(f.val) }

// boolVal is a varint field declared bool.
func (f protoField) boolVal() bool { return f.val != 0 }
