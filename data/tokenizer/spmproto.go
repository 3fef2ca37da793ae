package tokenizer

import (
	"fmt"
	"math"
)

// pieceType is the type of a SentencePiece piece (ModelProto.SentencePiece.Type).
type pieceType int8

const (
	pieceNormal      pieceType = 1 // merged by BPE
	pieceUnknown     pieceType = 2 // <unk>: what characters outside the vocabulary become
	pieceControl     pieceType = 3 // <s>, </s>: never produced from text by the model
	pieceUserDefined pieceType = 4 // matched whole in the text and never merged
	pieceUnused      pieceType = 5 // split back into the pieces it merged from
	pieceByte        pieceType = 6 // <0xXX>, with byte_fallback
)

// spmPiece is one entry of a SentencePiece vocabulary; its id is its index.
type spmPiece struct {
	text  string
	score float32
	typ   pieceType
}

// SentencePiece model types (TrainerSpec.ModelType).
const (
	modelUnigram = 1
	modelBPE     = 2
)

var modelTypeNames = map[uint64]string{1: "UNIGRAM", 2: "BPE", 3: "WORD", 4: "CHAR"}

// trainerSpec holds the TrainerSpec fields that change encoding, with the proto's defaults.
type trainerSpec struct {
	modelType          uint64 // field 3
	wsSuffix           bool   // field 24, treat_whitespace_as_suffix
	byteFallback       bool   // field 35
	unk, bos, eos, pad int32  // fields 40 to 43
}

// normalizerSpec holds the NormalizerSpec fields, with the proto's defaults.
type normalizerSpec struct {
	name        string // field 1
	charsmap    bool   // field 2, precompiled_charsmap, is not empty
	dummyPrefix bool   // field 3, add_dummy_prefix
	removeExtra bool   // field 4, remove_extra_whitespaces
	escape      bool   // field 5, escape_whitespaces
}

// modelProto is the part of a SentencePiece ModelProto this package reads. Other fields (the self-test
// data, the training options that do not change encoding) are skipped, as protocol buffers allow.
type modelProto struct {
	pieces  []spmPiece     // field 1
	trainer trainerSpec    // field 2
	norm    normalizerSpec // field 3
	denorm  bool           // field 5, denormalizer_spec, has a character map
}

// decodeModelProto reads the fields of a ModelProto. An embedded message given twice is merged, field by
// field, as protocol buffers specify. The pieces are at most maxID, each at least 5 bytes of the input.
func decodeModelProto(b []byte) (*modelProto, error) {
	m := &modelProto{
		trainer: trainerSpec{modelType: modelUnigram, unk: 0, bos: 1, eos: 2, pad: -1},
		norm:    normalizerSpec{dummyPrefix: true, removeExtra: true, escape: true},
	}
	err := eachField(b, func(f protoField) error {
		switch f.num {
		case 1:
			return m.addPiece(f)
		case 2:
			return embedded(f, "trainer_spec", m.trainer.set)
		case 3:
			return embedded(f, "normalizer_spec", m.norm.set)
		case 5:
			var d normalizerSpec
			err := embedded(f, "denormalizer_spec", d.set)
			m.denorm = m.denorm || d.charsmap
			return err
		}
		return nil
	})
	return m, err
}

// embedded calls set on each field of the embedded message f, naming it in errors.
func embedded(f protoField, name string, set func(protoField) error) error {
	if err := f.want(wireBytes); err != nil {
		return fmt.Errorf("%s: %v", name, err)
	}
	if err := eachField(f.data, set); err != nil {
		return fmt.Errorf("%s: %v", name, err)
	}
	return nil
}

// addPiece decodes one SentencePiece message and appends it.
func (m *modelProto) addPiece(f protoField) error {
	id := len(m.pieces)
	if id >= maxID {
		return fmt.Errorf("more than %d pieces", maxID)
	}
	p, err := decodePiece(f)
	if err != nil {
		return fmt.Errorf("piece %d: %v", id, err)
	}
	m.pieces = append(m.pieces, p)
	return nil
}

// decodePiece reads a SentencePiece message: a non-empty piece, its score and its type (NORMAL by default).
func decodePiece(f protoField) (spmPiece, error) {
	if err := f.want(wireBytes); err != nil {
		return spmPiece{}, err
	}
	p := pieceFields{typ: uint64(pieceNormal)}
	if err := eachField(f.data, p.set); err != nil {
		return spmPiece{}, err
	}
	if len(p.text) == 0 {
		return spmPiece{}, fmt.Errorf("empty piece")
	}
	if p.typ < uint64(pieceNormal) || p.typ > uint64(pieceByte) {
		return spmPiece{}, fmt.Errorf("piece %q has type %d", p.text, p.typ)
	}
	return spmPiece{text: string(p.text), score: math.Float32frombits(uint32(p.score)), typ: pieceType(p.typ)}, nil
}

// pieceFields are the fields of a SentencePiece message as read; text aliases the input until the piece is
// kept, so that a field repeated many times allocates nothing.
type pieceFields struct {
	text       []byte
	score, typ uint64
}

func (p *pieceFields) set(g protoField) error {
	switch g.num {
	case 1:
		p.text = g.data
		return g.want(wireBytes)
	case 2:
		p.score = g.val
		return g.want(wireFixed32)
	case 3:
		p.typ = g.val
		return g.want(wireVarint)
	}
	return nil
}

// set reads one TrainerSpec field; those this package does not use are skipped.
func (t *trainerSpec) set(f protoField) error {
	switch f.num {
	case 3:
		t.modelType = f.val
	case 24:
		t.wsSuffix = f.boolVal()
	case 35:
		t.byteFallback = f.boolVal()
	case 40:
		t.unk = f.int32Val()
	case 41:
		t.bos = f.int32Val()
	case 42:
		t.eos = f.int32Val()
	case 43:
		t.pad = f.int32Val()
	default:
		return nil
	}
	return f.want(wireVarint)
}

// set reads one NormalizerSpec field; the normalization rule's text (field 6) is only for training.
func (n *normalizerSpec) set(f protoField) error {
	switch f.num {
	case 1:
		n.name = string(f.data)
		return f.want(wireBytes)
	case 2:
		n.charsmap = len(f.data) > 0
		return f.want(wireBytes)
	case 3:
		n.dummyPrefix = f.boolVal()
	case 4:
		n.removeExtra = f.boolVal()
	case 5:
		n.escape = f.boolVal()
	default:
		return nil
	}
	return f.want(wireVarint)
}
