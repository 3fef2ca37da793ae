package synth

import (
	"bytes"
	"errors"
	"fmt"
	"image/png"
	"math"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"sync"
	"sync/atomic"

	"github.com/flextrain/flextrain/internal/atomicfile"
)

// generatorVersion is stored in synth.json. Bump it whenever a change to this package changes the files a
// seed produces, so that Generate regenerates instead of reusing a dataset drawn by older code.
const generatorVersion = 3 // 3: records carry tags

// pngEncoder favours speed: the images' grain leaves little for a slower level to gain, and the demo
// generates tens of thousands of them.
var pngEncoder = png.Encoder{CompressionLevel: png.BestSpeed}

// Files and folders Generate writes under Options.Dir.
const (
	StampFile     = "synth.json"     // the options used; written last, so its presence means a complete dataset
	TokenizerFile = "tokenizer.json" // WordLevel vocabulary covering every generated text and the template
	ImageDir      = "images"         // the PNG files, named <split>-<index>.png
)

// Manifest says where a generated dataset lies and how many samples of each kind it holds.
type Manifest struct {
	Train, Val, Test string // the LLaVA JSON files of the three splits
	ImageFolder      string // the folder record "image" paths are relative to
	Tokenizer        string // the tokenizer.json to train with
	// Counts has the size of each split ("train", "val", "test"), of each kind in it ("train.small",
	// "train.large", "train.text", …) and the number of image files ("images").
	Counts map[string]int
	Reused bool // the dataset was already there (same synth.json) and was not written again
}

// split is one of the three splits; key separates their random streams.
type split struct {
	name string
	n    int
	key  uint64
}

func splits(o Options) []split {
	return []split{{"train", o.N, 1}, {"val", o.ValN, 2}, {"test", o.TestN, 3}}
}

// Random stream purposes, so that the kind order and the samples of a split never share a stream.
const (
	streamKinds = iota + 1
	streamSample
	streamCenter
)

// job is one sample to generate.
type job struct {
	split split
	i     int
	kind  string
}

func (j job) name() string { return sampleName(j.split.name, j.i) }

// image is the sample's image path relative to the image folder, "" for a text-only sample.
func (j job) image() string {
	if j.kind == KindText {
		return ""
	}
	return j.name() + ".png"
}

// plan lists every sample of every split. Each split has exactly round(n·TextFrac) text-only samples and
// round(image samples·SmallFrac) small ones, in a seeded random order.
func plan(o Options) []job {
	var jobs []job
	for _, sp := range splits(o) {
		nText := int(math.Round(float64(sp.n) * o.TextFrac))
		nSmall := int(math.Round(float64(sp.n-nText) * o.SmallFrac))
		kinds := make([]string, 0, sp.n)
		for _, c := range []struct {
			kind string
			n    int
		}{{KindSmall, nSmall}, {KindLarge, sp.n - nText - nSmall}, {KindText, nText}} {
			for range c.n {
				kinds = append(kinds, c.kind)
			}
		}
		shuffle(newRNG(o.Seed, sp.key, streamKinds), kinds)
		for i, k := range kinds {
			jobs = append(jobs, job{split: sp, i: i, kind: k})
		}
	}
	return jobs
}

// Generate writes the dataset that opts describe under opts.Dir: train.json, val.json and test.json (LLaVA
// JSON arrays of Record), the PNG images in images/, tokenizer.json and synth.json (the options). The same
// options give byte-identical files with the same Go release, whatever opts.Workers is. When Dir already
// holds a complete dataset of the same options (the same synth.json and every file present) Generate
// returns its manifest without writing anything.
func Generate(opts Options) (Manifest, error) {
	if err := opts.Validate(); err != nil {
		return Manifest{}, err
	}
	if opts.Dir == "" {
		return Manifest{}, fmt.Errorf("%w: dir: empty", ErrOptions)
	}
	jobs := plan(opts)
	m := manifest(opts.Dir, jobs)
	stamp, err := stampJSON(opts)
	if err != nil {
		return m, err
	}
	if complete(opts.Dir, stamp, jobs) {
		m.Reused = true
		return m, nil
	}
	return m, write(opts, jobs, stamp)
}

// write generates and writes every file, synth.json last.
func write(o Options, jobs []job, stamp []byte) error {
	stampPath := filepath.Join(o.Dir, StampFile)
	if err := os.Remove(stampPath); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("synth: remove %s: %w", stampPath, err)
	}
	imgDir := filepath.Join(o.Dir, ImageDir)
	if err := os.MkdirAll(imgDir, 0o755); err != nil {
		return fmt.Errorf("synth: create %s: %w", imgDir, err)
	}
	if err := removeStale(imgDir); err != nil {
		return err
	}
	recs, err := render(o, jobs, imgDir)
	if err != nil {
		return err
	}
	if err := writeSplits(o, jobs, recs); err != nil {
		return err
	}
	tok, err := tokenizerJSON(o.Signs > 0)
	if err != nil {
		return err
	}
	if err := atomicfile.WriteFile(filepath.Join(o.Dir, TokenizerFile), tok); err != nil {
		return err
	}
	return atomicfile.WriteFile(stampPath, stamp)
}

// stampJSON is the content of synth.json: the generator version and the options that define the dataset.
func stampJSON(o Options) ([]byte, error) {
	b, err := marshal(struct {
		Generator int `json:"generator"`
		Options
	}{generatorVersion, o}, "")
	if err != nil {
		return nil, fmt.Errorf("synth: encode %s: %w", StampFile, err)
	}
	return append(b, '\n'), nil
}

// manifest lists the paths and counts of the planned dataset.
func manifest(dir string, jobs []job) Manifest {
	m := Manifest{
		Train: filepath.Join(dir, "train.json"), Val: filepath.Join(dir, "val.json"), Test: filepath.Join(dir, "test.json"),
		ImageFolder: filepath.Join(dir, ImageDir), Tokenizer: filepath.Join(dir, TokenizerFile),
		Counts: map[string]int{"train": 0, "val": 0, "test": 0, "images": 0},
	}
	for _, j := range jobs {
		m.Counts[j.split.name]++
		m.Counts[j.split.name+"."+j.kind]++
		if j.image() != "" {
			m.Counts["images"]++
		}
	}
	return m
}

// complete reports whether dir holds the dataset of this stamp: synth.json equal to it and every file there.
func complete(dir string, stamp []byte, jobs []job) bool {
	old, err := os.ReadFile(filepath.Join(dir, StampFile))
	if err != nil || !bytes.Equal(old, stamp) {
		return false
	}
	files := []string{"train.json", "val.json", "test.json", TokenizerFile}
	for _, j := range jobs {
		if img := j.image(); img != "" {
			files = append(files, filepath.Join(ImageDir, img))
		}
	}
	for _, f := range files {
		if _, err := os.Stat(filepath.Join(dir, f)); err != nil {
			return false
		}
	}
	return true
}

// stalePattern matches the image names Generate writes; only those are removed before a new dataset.
var stalePattern = regexp.MustCompile(`^(train|val|test)-[0-9]{6,}\.png$`)

// removeStale deletes the images of an earlier dataset, so that a smaller new one leaves no orphans.
func removeStale(imgDir string) error {
	entries, err := os.ReadDir(imgDir)
	if err != nil {
		return fmt.Errorf("synth: read %s: %w", imgDir, err)
	}
	for _, e := range entries {
		if e.Type().IsRegular() && stalePattern.MatchString(e.Name()) {
			p := filepath.Join(imgDir, e.Name())
			if err := os.Remove(p); err != nil {
				return fmt.Errorf("synth: remove %s: %w", p, err)
			}
		}
	}
	return nil
}

// render draws every sample on a pool of workers, writes the images and returns the records in job order.
// Each sample draws from its own random stream (seed, split, index), so the output does not depend on which
// worker draws it. The error returned is that of the first failing job.
func render(o Options, jobs []job, imgDir string) ([]Record, error) {
	recs := make([]Record, len(jobs))
	errs := make([]error, len(jobs))
	var next atomic.Int64
	var failed atomic.Bool
	var wg sync.WaitGroup
	for range workers(o, len(jobs)) {
		wg.Go(func() {
			for k := int(next.Add(1) - 1); k < len(jobs) && !failed.Load(); k = int(next.Add(1) - 1) {
				recs[k], errs[k] = renderJob(o, jobs[k], imgDir)
				if errs[k] != nil {
					failed.Store(true)
				}
			}
		})
	}
	wg.Wait()
	return recs, firstError(errs)
}

func workers(o Options, jobs int) int {
	n := o.Workers
	if n == 0 {
		n = runtime.GOMAXPROCS(0)
	}
	return max(1, min(n, jobs))
}

func firstError(errs []error) error {
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	return nil
}

// renderJob draws one sample and, for an image sample, writes its PNG.
func renderJob(o Options, j job, imgDir string) (Record, error) {
	r := newRNG(o.Seed, j.split.key, streamSample, uint64(j.i))
	if j.kind == KindText {
		return renderText(r).record(j.name(), ""), nil
	}
	asks, centred := 1, false
	if j.split.name == "train" {
		asks = o.Asks
		// A stream of its own, so that the sample's drawing is the same with and without Center.
		centred = o.Center > 0 && float64(newRNG(o.Seed, j.split.key, streamCenter, uint64(j.i)).intn(1<<20)) < o.Center*(1<<20)
	}
	img, c, err := renderImage(o, r, j.kind, asks, centred)
	if err != nil {
		return Record{}, fmt.Errorf("synth: sample %s: %w", j.name(), err)
	}
	var b bytes.Buffer
	if err := pngEncoder.Encode(&b, img); err != nil {
		return Record{}, fmt.Errorf("synth: encode %s: %w", j.image(), err)
	}
	p := filepath.Join(imgDir, j.image())
	if err := os.WriteFile(p, b.Bytes(), 0o644); err != nil {
		return Record{}, fmt.Errorf("synth: write %s: %w", p, err)
	}
	return c.record(j.name(), j.image()), nil
}

// writeSplits writes the three JSON files, one record per line.
func writeSplits(o Options, jobs []job, recs []Record) error {
	for _, sp := range splits(o) {
		var b bytes.Buffer
		b.WriteString("[")
		n := 0
		for k, j := range jobs {
			if j.split.name != sp.name {
				continue
			}
			line, err := marshal(recs[k], "")
			if err != nil {
				return fmt.Errorf("synth: encode %s: %w", j.name(), err)
			}
			if n > 0 {
				b.WriteByte(',')
			}
			b.WriteByte('\n')
			b.Write(line)
			n++
		}
		b.WriteString("\n]\n")
		if err := atomicfile.WriteFile(filepath.Join(o.Dir, sp.name+".json"), b.Bytes()); err != nil {
			return err
		}
	}
	return nil
}
