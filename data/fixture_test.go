package data

import (
	"bytes"
	"encoding/json"
	"fmt"
	"image"
	"image/color"
	"image/jpeg"
	"image/png"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/flextrain/flextrain/data/tokenizer"
)

// Fixture geometry: S=16, P=8 (n = 4 image tokens), Z=2 (HR 32).
const (
	fxS, fxP, fxZ = 16, 8, 2
	fxMaxLen      = 128
)

// testTokenizer loads the small tokenizer fixture of data/testdata/tokenizer.
func testTokenizer(t testing.TB) *tokenizer.Tokenizer {
	t.Helper()
	tok, err := tokenizer.Load(filepath.Join("testdata", "tokenizer", "llama", "tokenizer.json.gz"))
	if err != nil {
		t.Fatalf("load tokenizer: %v", err)
	}
	return tok
}

// fixtureImage is a w×h image whose colours depend on seed, so each sample's pixels differ.
func fixtureImage(w, h, seed int) *image.RGBA {
	img := image.NewRGBA(image.Rect(0, 0, w, h))
	for y := range h {
		for x := range w {
			img.SetRGBA(x, y, color.RGBA{uint8(seed*37 + x*11), uint8(seed*13 + y*17), uint8(x*y + seed), 255})
		}
	}
	return img
}

// writeImage encodes img as PNG or JPEG (by the extension of name) under dir.
func writeImage(t testing.TB, dir, name string, img image.Image) {
	t.Helper()
	var buf bytes.Buffer
	var err error
	if strings.HasSuffix(name, ".png") {
		err = png.Encode(&buf, img)
	} else {
		err = jpeg.Encode(&buf, img, &jpeg.Options{Quality: 90})
	}
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(dir, name), buf.Bytes())
}

func writeFile(t testing.TB, path string, b []byte) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
}

// conv is a one-round conversation.
func conv(q, a string) []Turn {
	return []Turn{{From: "human", Value: q}, {From: "gpt", Value: a}}
}

// fixtureRecord is a record as written to the data file.
type fixtureRecord struct {
	ID            string `json:"id"`
	Image         string `json:"image,omitempty"`
	Conversations []Turn `json:"conversations"`
}

// fixture is a dataset in a temp dir: good image samples (PNG and JPEG) and text-only ones, plus the
// bad kinds asked for.
type fixture struct {
	dir, folder, data string
	records           []fixtureRecord
}

// Bad kinds a fixture can hold.
const (
	badMissing   = "missing"
	badTruncated = "truncated"
	badTooLong   = "too_long"
)

// newFixture writes good samples (every fifth text-only) followed by one record per bad kind, spread
// through the file.
func newFixture(t testing.TB, good int, bad ...string) *fixture {
	t.Helper()
	f := &fixture{dir: t.TempDir()}
	f.folder = filepath.Join(f.dir, "images")
	for i := range good {
		r := fixtureRecord{ID: fmt.Sprintf("good-%03d", i), Conversations: conv("<image>\nwhat colour is the cat", "the cat is red")}
		switch {
		case i%5 == 4:
			r.Image, r.Conversations = "", conv("tell me a story about a dog", "the dog ran home")
		case i%2 == 0:
			r.Image = fmt.Sprintf("coco/%03d.png", i)
			writeImage(t, f.folder, r.Image, fixtureImage(20+i%7, 12+i%5, i))
		default:
			r.Image = fmt.Sprintf("coco/%03d.jpg", i)
			writeImage(t, f.folder, r.Image, fixtureImage(15, 25, i))
		}
		f.records = append(f.records, r)
	}
	for k, kind := range bad {
		f.insert(t, (k+1)*len(f.records)/(len(bad)+1), f.badRecord(t, kind))
	}
	f.data = filepath.Join(f.dir, "data.json")
	f.write(t, f.data, false)
	return f
}

func (f *fixture) insert(t testing.TB, at int, r fixtureRecord) {
	f.records = append(f.records[:at], append([]fixtureRecord{r}, f.records[at:]...)...)
}

// badRecord makes one bad record of the given kind.
func (f *fixture) badRecord(t testing.TB, kind string) fixtureRecord {
	r := fixtureRecord{ID: "bad-" + kind, Conversations: conv("<image>\nwhat is this", "a cat")}
	switch kind {
	case badMissing:
		r.Image = "coco/nowhere.jpg"
	case badTruncated:
		var buf bytes.Buffer
		if err := jpeg.Encode(&buf, fixtureImage(40, 40, 3), nil); err != nil {
			t.Fatal(err)
		}
		r.Image = "coco/truncated.jpg"
		writeFile(t, filepath.Join(f.folder, r.Image), buf.Bytes()[:buf.Len()/2])
	case badTooLong:
		r.Image = ""
		r.Conversations = conv(strings.Repeat("cat ", fxMaxLen+1), "red")
	default:
		t.Fatalf("unknown bad kind %q", kind)
	}
	return r
}

// write writes the records as a JSON array, or JSON Lines.
func (f *fixture) write(t testing.TB, path string, lines bool) {
	t.Helper()
	var buf bytes.Buffer
	if !lines {
		buf.WriteString("[\n")
	}
	for i, r := range f.records {
		b, err := json.Marshal(r)
		if err != nil {
			t.Fatal(err)
		}
		buf.Write(b)
		if !lines && i < len(f.records)-1 {
			buf.WriteString(",")
		}
		buf.WriteString("\n")
	}
	if !lines {
		buf.WriteString("]\n")
	}
	writeFile(t, path, buf.Bytes())
}

// options are loader options for the fixture.
func (f *fixture) options(t testing.TB) Options {
	return Options{DataPath: f.data, ImageFolder: f.folder, Tokenizer: testTokenizer(t), ImageSize: fxS, Zoom: fxZ,
		PatchSize: fxP, ModelMaxLength: fxMaxLen, BatchSize: 4, Seed: 7, Shuffle: true, Workers: 2}
}
