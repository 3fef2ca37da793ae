package checkpoints

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"hash"
	"io"

	"github.com/klauspost/compress/zstd"
)

// readFrame reads a frame of kind (see frame.go) from r, which holds size bytes, and returns its raw
// payload, which may have at most limit bytes. It reads r once, front to back, and holds little more
// than the payload: the header is checked first (magic and version, then kind and lengths, the claimed
// raw length against limit and against what the body can hold, before anything is allocated); the body
// then streams through the zstd decoder into one buffer of exactly the raw length, each byte written
// straight to its final place, while the frame's SHA-256 is computed; the checksum is compared at the
// end, and nothing is returned unless it matches. Errors wrap ErrVersion (magic, version) or ErrCorrupt
// (anything else); the caller adds the path.
func readFrame(r io.Reader, size int64, kind string, limit int64) ([]byte, error) {
	sum := sha256.New()
	hashed := io.TeeReader(r, sum)
	h, err := readHeader(hashed, size, kind, limit)
	if err != nil {
		return nil, err
	}
	body := io.LimitReader(hashed, int64(h.bodyLen))
	raw, decodeErr := decodeBody(body, h.rawLen, compressed(kind))
	if err := checkTrailer(r, body, sum); err != nil {
		return nil, err // a damaged file: say so, whatever the decoder made of it
	}
	if decodeErr != nil {
		return nil, decodeErr
	}
	return raw, nil
}

// frameHeader holds the lengths a frame's header gives.
type frameHeader struct{ rawLen, bodyLen uint64 }

// readHeader reads the header of a frame of size bytes from r and checks it: magic and version first
// (ErrVersion), so a future format is reported as such, then kind and lengths (ErrCorrupt).
func readHeader(r io.Reader, size int64, kind string, limit int64) (frameHeader, error) {
	b := make([]byte, min(size, headerSize))
	if _, err := io.ReadFull(r, b); err != nil {
		return frameHeader{}, fmt.Errorf("%w: read header: %w", ErrCorrupt, err)
	}
	if err := checkHead(b); err != nil {
		return frameHeader{}, err
	}
	if size < headerSize+trailerSize {
		return frameHeader{}, fmt.Errorf("%w: truncated: %d bytes, a frame has at least %d", ErrCorrupt, size, headerSize+trailerSize)
	}
	return checkLengths(b, size, kind, limit)
}

// checkHead checks the magic and the version: the bytes that tell which reader a file needs.
func checkHead(b []byte) error {
	if len(b) < 12 {
		return fmt.Errorf("%w: truncated: %d bytes, a frame has at least %d", ErrCorrupt, len(b), headerSize+trailerSize)
	}
	if string(b[:8]) != magic {
		return fmt.Errorf("%w: bad magic %q, want %q", ErrVersion, b[:8], magic)
	}
	if v := binary.LittleEndian.Uint32(b[8:]); v != FormatVersion {
		return fmt.Errorf("%w: format version %d, this build reads %d", ErrVersion, v, FormatVersion)
	}
	return nil
}

// checkLengths checks the kind and the lengths of the header b of a frame of size bytes. The raw length
// sizes the buffer decodeBody allocates, so it is never trusted: it must be within limit, the caller's
// bound, and within what a zstd body of that size can hold.
func checkLengths(b []byte, size int64, kind string, limit int64) (frameHeader, error) {
	h := frameHeader{rawLen: binary.LittleEndian.Uint64(b[16:]), bodyLen: binary.LittleEndian.Uint64(b[24:])}
	switch body := uint64(size - headerSize - trailerSize); {
	case string(b[12:16]) != kind:
		return h, fmt.Errorf("%w: file kind %q, want %q", ErrCorrupt, b[12:16], kind)
	case h.bodyLen != body:
		return h, fmt.Errorf("%w: header gives a %d-byte body, file holds %d", ErrCorrupt, h.bodyLen, body)
	case h.rawLen > uint64(limit):
		return h, fmt.Errorf("%w: payload claims %d bytes, the limit is %d", ErrCorrupt, h.rawLen, limit)
	case compressed(kind) && h.bodyLen > uint64(maxBody(int64(h.rawLen))):
		return h, fmt.Errorf("%w: a %d-byte body is more than zstd needs for the %d bytes the header gives", ErrCorrupt, h.bodyLen, h.rawLen)
	case compressed(kind) && h.bodyLen < h.rawLen/maxInflation:
		return h, fmt.Errorf("%w: a %d-byte body cannot hold the %d bytes the header gives", ErrCorrupt, h.bodyLen, h.rawLen)
	case !compressed(kind) && h.rawLen != h.bodyLen:
		return h, fmt.Errorf("%w: raw length %d, body holds %d", ErrCorrupt, h.rawLen, h.bodyLen)
	}
	return h, nil
}

// checkTrailer reads what the decoder left of body, then the trailer from r, and compares the trailer
// with sum, the SHA-256 of every byte before it.
func checkTrailer(r, body io.Reader, sum hash.Hash) error {
	if _, err := io.Copy(io.Discard, body); err != nil {
		return fmt.Errorf("%w: read body: %w", ErrCorrupt, err)
	}
	var trailer [trailerSize]byte
	if _, err := io.ReadFull(r, trailer[:]); err != nil {
		return fmt.Errorf("%w: read checksum: %w", ErrCorrupt, err)
	}
	if !bytes.Equal(sum.Sum(nil), trailer[:]) {
		return fmt.Errorf("%w: SHA-256 mismatch (file damaged or truncated)", ErrCorrupt)
	}
	return nil
}

// decodeBody reads a frame's body and returns the payload of exactly rawLen bytes it holds: the body
// itself, or the body decompressed. Memory is the payload's buffer plus the bounded zstd window.
func decodeBody(body io.Reader, rawLen uint64, zst bool) ([]byte, error) {
	raw := make([]byte, rawLen)
	if zst {
		return raw, unzstd(body, raw)
	}
	if _, err := io.ReadFull(body, raw); err != nil {
		return nil, fmt.Errorf("%w: read body: %w", ErrCorrupt, err)
	}
	return raw, nil
}

// unzstd decompresses body, the lanes of a payload (see toLanes), into raw in the payload's own order,
// and fails unless it holds exactly len(raw) bytes: decoding stops at the first byte past them.
func unzstd(body io.Reader, raw []byte) error {
	dec, err := zstd.NewReader(body, zstd.WithDecoderConcurrency(1),
		zstd.WithDecoderMaxWindow(zstdWindow), zstd.WithDecoderMaxMemory(zstdWindow))
	if err != nil {
		return fmt.Errorf("%w: zstd: %w", ErrCorrupt, err)
	}
	defer dec.Close()
	w := &laneWriter{out: raw}
	if _, err := dec.WriteTo(w); err != nil {
		return fmt.Errorf("%w: zstd: %w", ErrCorrupt, err)
	}
	if w.pos != len(raw) {
		return fmt.Errorf("%w: payload decompresses to %d bytes, header gives %d", ErrCorrupt, w.pos, len(raw))
	}
	return nil
}

// errPastEnd reports a payload that decompresses to more bytes than its header gives.
var errPastEnd = errors.New("payload decompresses past the length its header gives")

// laneWriter receives the lanes of a payload (see toLanes) in order and stores each byte at its place in
// out, which ends up holding the payload itself: the inverse transform costs no second buffer.
type laneWriter struct {
	out []byte
	pos int // bytes received so far
}

// Write stores p, or fails with errPastEnd if out has no room for all of it.
func (w *laneWriter) Write(p []byte) (int, error) {
	if len(p) > len(w.out)-w.pos {
		return 0, errPastEnd
	}
	for rest := p; len(rest) > 0; {
		rest = rest[w.place(rest):]
	}
	return len(p), nil
}

// place stores the longest prefix of p that falls in one lane, or in the tail, and returns its length.
// Byte i of lane k is byte k of word i of the payload; the tail bytes follow the four lanes as they are.
func (w *laneWriter) place(p []byte) int {
	words := len(w.out) / 4
	if w.pos >= 4*words {
		n := copy(w.out[w.pos:], p)
		w.pos += n
		return n
	}
	lane, word := w.pos/words, w.pos%words
	n := min(len(p), words-word)
	scatter(w.out[4*word+lane:], p[:n])
	w.pos += n
	return n
}

// scatter stores src[i] at dst[4*i], eight bytes per bounds check where it can.
func scatter(dst, src []byte) {
	i := 0
	for ; i+8 <= len(src); i += 8 {
		d, s := dst[4*i:4*i+29:4*i+29], src[i:i+8:i+8]
		d[0], d[4], d[8], d[12], d[16], d[20], d[24], d[28] = s[0], s[1], s[2], s[3], s[4], s[5], s[6], s[7]
	}
	for ; i < len(src); i++ {
		dst[4*i] = src[i]
	}
}
