package train

import (
	"context"
	"encoding/json"
	"fmt"
	"image"
	"image/color"
	"image/png"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"

	"github.com/flextrain/flextrain/checkpoints"
	"github.com/flextrain/flextrain/inference"
)

// colourSet writes n samples whose only clue is the image: "What color is the circle?" over a picture
// filled with one of a few colours, answered by its name. The tiny dataset's tokenizer knows the words.
func colourSet(t *testing.T, dir string, n int, seed uint64) string {
	t.Helper()
	colours := []struct {
		name string
		c    color.RGBA
	}{{"red", color.RGBA{220, 30, 30, 255}}, {"green", color.RGBA{30, 200, 40, 255}},
		{"blue", color.RGBA{30, 40, 220, 255}}, {"yellow", color.RGBA{230, 220, 30, 255}}}
	rng := rand.New(rand.NewPCG(seed, 1))
	type turn struct{ From, Value string }
	type record struct {
		ID            string `json:"id"`
		Image         string `json:"image"`
		Conversations []turn `json:"conversations"`
	}
	var recs []record
	for i := 0; i < n; i++ {
		c := colours[rng.IntN(len(colours))]
		img := image.NewRGBA(image.Rect(0, 0, 96, 96))
		for p := 0; p < len(img.Pix); p += 4 {
			jitter := uint8(rng.IntN(20))
			img.Pix[p], img.Pix[p+1], img.Pix[p+2], img.Pix[p+3] = c.c.R-jitter/2, c.c.G-jitter/2, c.c.B-jitter/2, 255
		}
		name := fmt.Sprintf("c%04d.png", i)
		f, err := os.Create(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		if err := png.Encode(f, img); err != nil {
			t.Fatal(err)
		}
		f.Close()
		recs = append(recs, record{ID: fmt.Sprint("c", i), Image: name, Conversations: []turn{
			{"human", "<image>\nWhat color is the circle?"}, {"gpt", c.name}}})
	}
	path := filepath.Join(dir, fmt.Sprintf("colours-%d.json", seed))
	b, err := json.Marshal(recs)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// TestLearnsFromTheImage trains the tiny model, vision tower included, on questions only the image answers,
// and requires held-out accuracy far above the 25% of guessing: the LR path carries the image to the answer.
func TestLearnsFromTheImage(t *testing.T) {
	if testing.Short() {
		t.Skip("trains for a few seconds")
	}
	dir := t.TempDir()
	train, val := colourSet(t, dir, 128, 1), colourSet(t, dir, 32, 2)
	cfg := tinyConfig(t, "data_path="+train, "image_folder="+dir, "eval_data_path="+val, "max_steps=60",
		"learning_rate=3e-3", "flex.view=lr", "trainable=model.*,lm_head.*", "frozen=")
	if _, out, err := runTiny(t, context.Background(), cfg, RunOptions{}); err != nil {
		t.Fatalf("fit: %v\n%s", err, out)
	}
	last, err := checkpoints.Latest(cfg.OutputDir)
	if err != nil {
		t.Fatal(err)
	}
	tr, err := inference.Load(last.Path, inference.Options{})
	if err != nil {
		t.Fatal(err)
	}
	r, err := tr.EvaluateFile(context.Background(), val, dir)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("held-out exact match %.2f of %d, loss %.3f", r.Accuracy, r.Answers, r.Loss)
	if r.Accuracy < 0.8 {
		t.Errorf("held-out accuracy %.2f: the model did not learn to read the colour from the image", r.Accuracy)
	}
}

// TestFeatureCacheHits trains two epochs of the tiny run with the frozen tower's features cached: the second
// epoch reads every image from the cache, and the summary and metrics report it.
func TestFeatureCacheHits(t *testing.T) {
	var rates []float64
	for _, mode := range []string{"memory", "off"} {
		cfg := tinyConfig(t, "max_steps=24", "feature_cache="+mode) // 12 steps of 4×2 samples make one epoch of 96
		sum, out, err := runTiny(t, context.Background(), cfg, RunOptions{})
		if err != nil {
			t.Fatalf("fit: %v\n%s", err, out)
		}
		rates = append(rates, sum.FeatureCacheHitRate)
	}
	if rates[0] < 0.45 || rates[1] != 0 {
		t.Errorf("hit rates %.3f (memory), %.3f (off); want about 0.5 after two epochs, and 0", rates[0], rates[1])
	}
}
