package synth

import (
	"bytes"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"image"
	"image/png"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
)

// testOptions is a dataset small enough for unit tests and large enough to hold every kind and task.
func testOptions(dir string) Options {
	o := DefaultOptions()
	o.Dir, o.N, o.ValN, o.TestN, o.Seed = dir, 120, 30, 30, 7
	return o
}

// shared is one generated dataset that the read-only tests share.
var shared = sync.OnceValues(func() (Manifest, error) {
	dir, err := os.MkdirTemp("", "synth-test-")
	if err != nil {
		return Manifest{}, err
	}
	return Generate(testOptions(dir))
})

func TestMain(m *testing.M) {
	code := m.Run()
	if man, err := shared(); err == nil {
		os.RemoveAll(filepath.Dir(man.Tokenizer))
	}
	os.Exit(code)
}

func sharedDataset(t *testing.T) Manifest {
	t.Helper()
	m, err := shared()
	if err != nil {
		t.Fatalf("Generate: %v", err)
	}
	return m
}

// readRecords decodes a split file strictly: a field that is not part of Record is an error.
func readRecords(t *testing.T, path string) []Record {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	var recs []Record
	if err := dec.Decode(&recs); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return recs
}

func splitFiles(m Manifest) map[string]string {
	return map[string]string{"train": m.Train, "val": m.Val, "test": m.Test}
}

func loadPNG(t *testing.T, path string) *image.RGBA {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	img, err := png.Decode(f)
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	rgba := image.NewRGBA(img.Bounds())
	for y := img.Bounds().Min.Y; y < img.Bounds().Max.Y; y++ {
		for x := img.Bounds().Min.X; x < img.Bounds().Max.X; x++ {
			rgba.Set(x, y, img.At(x, y))
		}
	}
	return rgba
}

// dirFiles maps every file under dir (relative path) to its bytes.
func dirFiles(t *testing.T, dir string) map[string][]byte {
	t.Helper()
	files := map[string][]byte{}
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := os.ReadFile(p)
		rel, _ := filepath.Rel(dir, p)
		files[rel] = b
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return files
}

func TestGenerateDeterministic(t *testing.T) {
	a, b, c := testOptions(t.TempDir()), testOptions(t.TempDir()), testOptions(t.TempDir())
	a.Workers, b.Workers, c.Workers = 1, 3, 2
	c.Seed++
	for _, o := range []Options{a, b, c} {
		if _, err := Generate(o); err != nil {
			t.Fatal(err)
		}
	}
	fa, fb, fc := dirFiles(t, a.Dir), dirFiles(t, b.Dir), dirFiles(t, c.Dir)
	if len(fa) != len(fb) {
		t.Fatalf("1 worker wrote %d files, 3 workers %d; want the same", len(fa), len(fb))
	}
	for name, want := range fa {
		if got, ok := fb[name]; !ok || !bytes.Equal(got, want) {
			t.Errorf("%s differs between 1 and 3 workers (present: %v)", name, ok)
		}
	}
	if bytes.Equal(fa["train.json"], fc["train.json"]) || bytes.Equal(fa["images/train-000000.png"], fc["images/train-000000.png"]) {
		t.Errorf("seeds %d and %d gave the same train.json or first image; want different data", a.Seed, c.Seed)
	}
}

func TestGenerateReuse(t *testing.T) {
	o := testOptions(t.TempDir())
	o.N, o.ValN, o.TestN = 20, 4, 4
	first, err := Generate(o)
	if err != nil || first.Reused {
		t.Fatalf("first Generate: reused %v, err %v; want a fresh dataset", first.Reused, err)
	}
	img := filepath.Join(first.ImageFolder, firstImage(t, first.Train))
	orig, _ := os.ReadFile(img)
	// Same options: nothing is rewritten, not even a damaged file (Generate checks presence, not content).
	os.WriteFile(img, []byte("not a png"), 0o644)
	if m, err := Generate(o); err != nil || !m.Reused {
		t.Fatalf("second Generate: reused %v, err %v; want reused", m.Reused, err)
	}
	if got, _ := os.ReadFile(img); string(got) != "not a png" {
		t.Errorf("reused dataset rewrote %s", img)
	}
	// A missing file: the dataset is generated again, identically.
	os.Remove(img)
	if m, err := Generate(o); err != nil || m.Reused {
		t.Fatalf("Generate after a deletion: reused %v, err %v; want regenerated", m.Reused, err)
	}
	if got, _ := os.ReadFile(img); !bytes.Equal(got, orig) {
		t.Errorf("regenerated %s differs from the first one", img)
	}
	// Other options: regenerated, and the images of the larger earlier dataset are gone.
	o.N = 10
	m, err := Generate(o)
	if err != nil || m.Reused {
		t.Fatalf("Generate with n=10: reused %v, err %v; want regenerated", m.Reused, err)
	}
	pngs, _ := filepath.Glob(filepath.Join(m.ImageFolder, "*.png"))
	if len(pngs) != m.Counts["images"] {
		t.Errorf("%d PNG files after shrinking; want %d", len(pngs), m.Counts["images"])
	}
}

func firstImage(t *testing.T, path string) string {
	t.Helper()
	for _, r := range readRecords(t, path) {
		if r.Image != "" {
			return r.Image
		}
	}
	t.Fatalf("%s has no image record", path)
	return ""
}

func TestGenerateErrors(t *testing.T) {
	file := filepath.Join(t.TempDir(), "file")
	os.WriteFile(file, nil, 0o644)
	cases := []struct {
		name        string
		change      func(o *Options)
		wantOptions bool // the error wraps ErrOptions
		inMsg       string
	}{
		{"no dir", func(o *Options) { o.Dir = "" }, true, "dir"},
		{"invalid", func(o *Options) { o.HRSize = 10 }, true, "hr"},
		{"dir under a file", func(o *Options) { o.Dir = filepath.Join(file, "sub") }, false, file},
	}
	for _, c := range cases {
		o := testOptions(t.TempDir())
		c.change(&o)
		_, err := Generate(o)
		if err == nil || !strings.Contains(err.Error(), c.inMsg) {
			t.Errorf("%s: Generate() = %v; want an error naming %q", c.name, err, c.inMsg)
		}
		if errors.Is(err, ErrOptions) != c.wantOptions {
			t.Errorf("%s: Generate() = %v; wraps ErrOptions: %v, want %v", c.name, err, !c.wantOptions, c.wantOptions)
		}
	}
}

var wordRE = regexp.MustCompile(`^\w+$`)

func TestRecordsWellFormed(t *testing.T) {
	m := sharedDataset(t)
	tasks := map[string][]string{
		KindSmall: {"read"}, KindLarge: {"color", "shape", "read"}, KindText: {"plus", "minus", "after", "fact"},
	}
	for split, path := range splitFiles(m) {
		for _, r := range readRecords(t, path) {
			if err := checkRecord(r, split, tasks[r.Kind]); err != "" {
				t.Errorf("%s %s: %s", split, r.ID, err)
			}
		}
	}
}

// checkRecord returns what is wrong with one record, or "".
func checkRecord(r Record, split string, tasks []string) string {
	c := r.Conversations
	switch {
	case !strings.HasPrefix(r.ID, split+"-"):
		return "id does not name the split"
	case tasks == nil:
		return "unknown kind " + r.Kind
	case !strings.Contains(strings.Join(tasks, ","), r.Task):
		return "task " + r.Task + " for kind " + r.Kind
	case len(c) != 2 || c[0].From != "human" || c[1].From != "gpt":
		return "want one human turn and one gpt turn"
	case (r.Image != "") != (r.Kind != KindText):
		return "image present iff the kind is not text"
	case strings.HasPrefix(c[0].Value, "<image>\n") != (r.Image != ""):
		return "question starts with <image>\\n iff there is an image"
	case strings.Count(c[0].Value, "<image>") > 1:
		return "more than one <image>"
	case !strings.HasSuffix(c[0].Value, suffix):
		return "question lacks the short-answer suffix"
	case !wordRE.MatchString(r.Answer()):
		return "answer " + r.Answer() + " is not a single word"
	case (len(r.Box) == 4) != (r.Image != ""):
		return "box present iff there is an image"
	}
	return checkTags(r)
}

// checkTags returns what is wrong with a record's tags: every image record describes its target (the
// colour and shape or sign the question names or answers, a large sign's text), a text record has none.
func checkTags(r Record) string {
	if r.Image == "" {
		if r.Tags != nil {
			return fmt.Sprintf("text record with tags %v", r.Tags)
		}
		return ""
	}
	// The word after "the ": a shape in a colour question, a colour in a shape or read question.
	named := strings.TrimSuffix(strings.Fields(strings.SplitN(r.Conversations[0].Value, "the ", 2)[1])[0], "?")
	a := r.Answer()
	want := map[string]string{"object": "sign", "color": named}
	switch {
	case r.Task == "color":
		want["color"], want["object"] = a, named
	case r.Task == "shape":
		want["object"] = a
	case r.Kind == KindLarge:
		want["text"] = a
	}
	if !maps.Equal(r.Tags, want) {
		return fmt.Sprintf("tags %v; want %v", r.Tags, want)
	}
	return ""
}

func TestBoxesAndSizes(t *testing.T) {
	m := sharedDataset(t)
	o := testOptions("")
	shapesSeen := map[string]int{}
	for split, path := range splitFiles(m) {
		for _, r := range readRecords(t, path) {
			if r.Image == "" {
				continue
			}
			cfg := pngConfig(t, filepath.Join(m.ImageFolder, r.Image))
			w, h := cfg.Width, cfg.Height
			if max(w, h) != o.HRSize || float64(min(w, h)) < o.MinAspect*float64(o.HRSize)-0.5 {
				t.Errorf("%s %s: image %dx%d; want long side %d, short side ≥ %g of it", split, r.ID, w, h, o.HRSize, o.MinAspect)
			}
			shapesSeen[orientation(w, h)]++
			box := image.Rect(r.Box[0], r.Box[1], r.Box[2], r.Box[3])
			if r.Box[0] >= r.Box[2] || r.Box[1] >= r.Box[3] || !box.In(image.Rect(0, 0, w, h)) {
				t.Errorf("%s %s: box %v not a non-empty rectangle inside the %dx%d image", split, r.ID, r.Box, w, h)
			}
		}
	}
	for _, want := range []string{"landscape", "portrait", "square"} {
		if shapesSeen[want] == 0 {
			t.Errorf("no %s image among %v; want all three", want, shapesSeen)
		}
	}
}

func orientation(w, h int) string {
	switch {
	case w > h:
		return "landscape"
	case h > w:
		return "portrait"
	}
	return "square"
}

func pngConfig(t *testing.T, path string) image.Config {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	cfg, err := png.DecodeConfig(f)
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return cfg
}

func TestCountsAndSplits(t *testing.T) {
	m := sharedDataset(t)
	// n = 120, text 0.1, small 0.5: 12 text, 54 small, 54 large; val and test (30): 3, 14 (13.5 rounds up), 13.
	want := map[string]int{
		"train": 120, "train.text": 12, "train.small": 54, "train.large": 54,
		"val": 30, "val.text": 3, "val.small": 14, "val.large": 13,
		"test": 30, "test.text": 3, "test.small": 14, "test.large": 13,
		"images": 108 + 27 + 27,
	}
	got := map[string]int{}
	owner := map[string]string{} // id, image name or image hash → split
	for split, path := range splitFiles(m) {
		for _, r := range readRecords(t, path) {
			got[split]++
			got[split+"."+r.Kind]++
			keys := []string{"id " + r.ID}
			if r.Image != "" {
				got["images"]++
				b, _ := os.ReadFile(filepath.Join(m.ImageFolder, r.Image))
				keys = append(keys, "image "+r.Image, fmt.Sprintf("image bytes %x", sha256.Sum256(b)))
			}
			for _, k := range keys {
				if prev, ok := owner[k]; ok {
					t.Errorf("%s in %s and %s; want each in one split once", k, prev, split)
				}
				owner[k] = split
			}
		}
	}
	for k, w := range want {
		if got[k] != w || m.Counts[k] != w {
			t.Errorf("count %s: records %d, manifest %d; want %d", k, got[k], m.Counts[k], w)
		}
	}
}

// TestAsks checks follow-up questions: training records get up to Asks question-answer pairs (the first
// as without follow-ups), validation and test keep one, and the images are those of the same seed without
// follow-ups.
func TestAsks(t *testing.T) {
	gen := func(asks int) (Manifest, map[string][]byte) {
		return generateImages(t, func(o *Options) { o.N, o.ValN, o.TestN, o.Asks = 40, 10, 10, asks })
	}
	one, oneImages := gen(0)
	three, threeImages := gen(3)
	if len(oneImages) != len(threeImages) {
		t.Fatalf("asks=3 wrote %d images; asks=0 wrote %d", len(threeImages), len(oneImages))
	}
	for name, b := range oneImages {
		if !bytes.Equal(b, threeImages[name]) {
			t.Errorf("%s differs between asks=0 and asks=3", name)
		}
	}
	for split, path := range splitFiles(three) {
		base := readRecords(t, splitFiles(one)[split])
		longer := 0
		for i, r := range readRecords(t, path) {
			c := r.Conversations
			want := 2
			if split == "train" && r.Image != "" {
				want = 6
				longer += min(1, len(c)/4)
			}
			if len(c)%2 != 0 || len(c) < 2 || len(c) > want {
				t.Errorf("%s %s: %d turns; want 2…%d in pairs", split, r.ID, len(c), want)
				continue
			}
			if c[0] != base[i].Conversations[0] || c[1] != base[i].Conversations[1] {
				t.Errorf("%s %s: first pair %v; want %v as without follow-ups", split, r.ID, c[:2], base[i].Conversations)
			}
			for k := 2; k < len(c); k += 2 {
				q, a := c[k], c[k+1]
				if q.From != "human" || a.From != "gpt" || strings.Contains(q.Value, "<image>") ||
					!strings.HasSuffix(q.Value, suffix) || !wordRE.MatchString(a.Value) {
					t.Errorf("%s %s: follow-up %v %v is not a plain question and one-word answer", split, r.ID, q, a)
				}
			}
		}
		if split == "train" && longer < 10 {
			t.Errorf("train: only %d of 40 records have follow-ups; want most", longer)
		}
	}
}

// TestCenter: with center=0.5 about half the training images put their target in the middle (a snapped sign
// within one grid step of it) and are the only images that differ from center=0; validation and test images
// never change.
func TestCenter(t *testing.T) {
	gen := func(center float64) (Manifest, map[string][]byte) {
		return generateImages(t, func(o *Options) { o.N, o.ValN, o.TestN, o.Snap, o.Others, o.Center = 60, 10, 10, 8, 1, center })
	}
	_, plainImages := gen(0)
	m, images := gen(0.5)
	centred, withImage := 0, 0
	for split, path := range splitFiles(m) {
		for _, r := range readRecords(t, path) {
			if r.Image == "" {
				continue
			}
			same := bytes.Equal(images[r.Image], plainImages[r.Image])
			if split != "train" {
				if !same {
					t.Errorf("%s %s: image changed with center=0.5", split, r.ID)
				}
				continue
			}
			withImage++
			if same {
				continue
			}
			centred++
			cfg, err := png.DecodeConfig(bytes.NewReader(images[r.Image]))
			if err != nil {
				t.Fatal(err)
			}
			step := 8 * 3 // a large sign's grid step; shapes and small signs sit closer
			cx, cy := (r.Box[0]+r.Box[2])/2, (r.Box[1]+r.Box[3])/2
			if abs(2*cx-cfg.Width) > 2*step || abs(2*cy-cfg.Height) > 2*step {
				t.Errorf("%s: target box %v is not in the middle of a %dx%d image", r.ID, r.Box, cfg.Width, cfg.Height)
			}
		}
	}
	if centred < withImage/4 || centred > 3*withImage/4 {
		t.Errorf("%d of %d training images centred; want about half", centred, withImage)
	}
}

func abs(v int) int { return max(v, -v) }

// generateImages writes a test dataset with testOptions changed by set and returns it with its image files.
func generateImages(t *testing.T, set func(*Options)) (Manifest, map[string][]byte) {
	t.Helper()
	o := testOptions(filepath.Join(t.TempDir(), "d"))
	set(&o)
	m, err := Generate(o)
	if err != nil {
		t.Fatal(err)
	}
	return m, dirFiles(t, m.ImageFolder)
}
