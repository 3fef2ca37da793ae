package data

import (
	"errors"
	"fmt"
	"runtime"
	"strings"
	"testing"
)

// hugeValue is JSON string content of about n bytes whose escapes, quotes and brackets would end the
// record early if the scanner lost track of the string.
func hugeValue(n int) string {
	const unit = `x \"]}{[\\ ` // 12 bytes of JSON text
	return strings.Repeat(unit, n/len(unit))
}

// writeWithHuge writes the fixture's three text records with a record of about n bytes in the middle,
// as a JSON array or JSON Lines.
func writeWithHuge(t *testing.T, f *fixture, n int, lines bool) {
	t.Helper()
	recs := []string{
		`{"id":"before","conversations":[{"from":"human","value":"q"},{"from":"gpt","value":"a"}]}`,
		fmt.Sprintf(`{"id":"huge","conversations":[{"from":"human","value":"%s"},{"from":"gpt","value":"a"}]}`, hugeValue(n)),
		`{"id":"after","conversations":[{"from":"human","value":"q"},{"from":"gpt","value":"a"}]}`,
	}
	text := "[" + strings.Join(recs, ",\n") + "]"
	if lines {
		text = strings.Join(recs, "\n")
	}
	writeFile(t, f.data, []byte(text))
}

// allocated runs fn and returns the bytes it allocated (runtime.MemStats.TotalAlloc).
func allocated(fn func()) uint64 {
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	fn()
	runtime.ReadMemStats(&after)
	return after.TotalAlloc - before.TotalAlloc
}

// TestRecordTooLarge: a 16 MB record under MaxRecordBytes = 4 KiB is one bad sample, record_too_large,
// its neighbours load, and opening and checking the whole file allocates a small fraction of the record:
// it is never held, decoded nor tokenised.
func TestRecordTooLarge(t *testing.T) {
	const size, limit = 16 << 20, 4 << 10
	for _, lines := range []bool{false, true} {
		t.Run(fmt.Sprintf("lines %v", lines), func(t *testing.T) {
			f := newFixture(t, 0)
			writeWithHuge(t, f, size, lines)
			o := f.options(t)
			o.MaxRecordBytes = limit
			var c Counts
			var err error
			alloc := allocated(func() { c, err = Check(t.Context(), o) })
			if err != nil || c.Records != 3 || c.Samples != 2 || c.Bad[ReasonRecordTooLarge] != 1 || c.Skipped != 1 {
				t.Errorf("got %+v, %v; want 3 records, 2 samples, 1 skipped as %s", c, err, ReasonRecordTooLarge)
			}
			if alloc > size/8 {
				t.Errorf("allocated %d bytes for a %d-byte record; want at most %d", alloc, size, size/8)
			}
			o.Policy = PolicyFail
			if _, err := Check(t.Context(), o); !errors.Is(err, ErrBadSample) || !errors.Is(err, ErrRecordTooLarge) {
				t.Errorf("fail policy: got %v; want ErrBadSample wrapping ErrRecordTooLarge", err)
			}
		})
	}
}

// TestIndexRecordLimit: the index of records around the limit, in both layouts: entries at the same
// offsets whatever the limit, too large exactly past it, and the index of the huge record holds at most
// a chunk and the limit.
func TestIndexRecordLimit(t *testing.T) {
	f := newFixture(t, 0)
	writeWithHuge(t, f, 1<<20, false)
	big, err := buildIndex(f.data, DefaultMaxRecordBytes)
	if err != nil || len(big.entries) != 3 || !big.entries[1].tooLarge {
		t.Fatalf("got %+v, %v; want 3 entries, the middle one too large", big, err)
	}
	huge := big.entries[1].end - big.entries[1].start
	tests := []struct {
		limit int64
		want  []bool // tooLarge by entry
	}{{huge - 1, []bool{false, true, false}}, {huge, []bool{false, false, false}}, {80, []bool{true, true, true}}}
	for _, tt := range tests {
		t.Run(fmt.Sprint(tt.limit), func(t *testing.T) {
			var ix *index
			alloc := allocated(func() { ix, err = buildIndex(f.data, tt.limit) })
			if err != nil {
				t.Fatal(err)
			}
			for i, e := range ix.entries {
				if e.tooLarge != tt.want[i] || e.start != big.entries[i].start || e.end != big.entries[i].end {
					t.Errorf("entry %d: got %+v; want too large %v at %d…%d", i, e, tt.want[i], big.entries[i].start, big.entries[i].end)
				}
			}
			if max := uint64(min(tt.limit, huge))*3 + 2*scanChunk; tt.want[1] && alloc > max {
				t.Errorf("allocated %d bytes; want at most %d, a chunk and the limit", alloc, max)
			}
		})
	}
}
