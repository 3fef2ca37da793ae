package main

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/flextrain/flextrain/data/tokenizer"
)

// Published-layout fixtures (scripts/make-llava-fixtures.py): the same tiny LLaVA-1.5 in liuhaotian's
// layout (float16 shards, tower in a sibling CLIP folder), as torch.save shards, and in llava-hf's (renamed
// tensors, vocabulary padded from 144 to 192).
var (
	llavaFolder    = filepath.Join("..", "..", "testdata", "llava", "llava-v1.5-tiny")
	llavaHFFolder  = filepath.Join("..", "..", "testdata", "llava", "llava-1.5-tiny-hf")
	llavaBinFolder = filepath.Join("..", "..", "testdata", "llava", "llava-v1.5-tiny-bin")
	folderImage    = filepath.Join("..", "..", "testdata", "tiny", "images", "train-000000.png")
)

// predictJSON runs `predict --json` on a model and returns its answer.
func predictJSON(t *testing.T, model string) string {
	t.Helper()
	var out bytes.Buffer
	args := []string{"--model", model, "--image", folderImage, "--question", "what color is the square", "--max-new-tokens", "6", "--json"}
	if err := predictMain(args, &out); err != nil {
		t.Fatalf("predict --model %s: %v", model, err)
	}
	var p predictOutput
	if err := json.Unmarshal(out.Bytes(), &p); err != nil {
		t.Fatalf("predict --json printed %q: %v", out.String(), err)
	}
	if p.Model != model || p.Answer == "" || len(p.Tokens) == 0 || len(p.Tokens) > 6 {
		t.Fatalf("predict --json = %+v; want model %s, an answer and at most 6 token ids", p, model)
	}
	if got := strings.Join(strings.Fields(decodeWith(t, model, p.Tokens)), " "); got != p.Answer {
		t.Errorf("tokens %v decode to %q; the answer is %q", p.Tokens, got, p.Answer)
	}
	return p.Answer
}

// TestPredictPublishedFolders: both published layouts of one model, and its PyTorch .bin shards, give the
// same answer, and so do its
// exports in either format and in float16 (the fixtures' own precision, so no value changes).
func TestPredictPublishedFolders(t *testing.T) {
	want := predictJSON(t, llavaFolder)
	for _, dir := range []string{llavaHFFolder, llavaBinFolder} {
		if got := predictJSON(t, dir); got != want {
			t.Errorf("%s answers %q; the llava folder %q", dir, got, want)
		}
	}
	for _, format := range []string{"llava", "llava-hf"} {
		dir := filepath.Join(t.TempDir(), format)
		var out bytes.Buffer
		if err := exportMain([]string{"--model", llavaFolder, "--format", format, "--dtype", "float16", "--out", dir}, &out); err != nil {
			t.Fatalf("export --format %s: %v", format, err)
		}
		if got := predictJSON(t, dir); got != want {
			t.Errorf("the %s export answers %q; the folder it came from %q", format, got, want)
		}
		var cfg map[string]any
		if err := json.Unmarshal(readFile(t, filepath.Join(dir, "config.json")), &cfg); err != nil {
			t.Fatal(err)
		}
		if _, ok := cfg["flex"]; ok {
			t.Errorf("the %s export of a base LLaVA has a flex block: it would answer with FlexAttention", format)
		}
	}
}

// TestInspectFolder: inspect names a folder's layout and model, and a folder without safetensors fails.
func TestInspectFolder(t *testing.T) {
	var out bytes.Buffer
	if err := inspectMain([]string{llavaHFFolder}, &out); err != nil {
		t.Fatalf("inspect: %v", err)
	}
	if want := "layout llava-hf: decoder 3 layers × 16 wide, 2 heads, vocabulary 192"; !strings.Contains(out.String(), want) {
		t.Errorf("inspect printed %q; want it to contain %q", out.String(), want)
	}
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "config.json"), readFile(t, filepath.Join(llavaFolder, "config.json")), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := inspectMain([]string{dir}, &out); err == nil || !strings.Contains(err.Error(), "no *.safetensors") {
		t.Errorf("inspect of a folder without weights: err = %v; want one naming the missing safetensors", err)
	}
}

// TestExportRefusesOptions: an unknown format or dtype is refused before the model is read.
func TestExportRefusesOptions(t *testing.T) {
	for _, args := range [][]string{{"--format", "gguf"}, {"--dtype", "int8"}} {
		out := filepath.Join(t.TempDir(), "out")
		err := exportMain(append([]string{"--model", "/nonexistent", "--out", out}, args...), &bytes.Buffer{})
		if err == nil || !strings.Contains(err.Error(), args[1]) {
			t.Errorf("export %v: err = %v; want one naming %q", args, err, args[1])
		}
	}
}

// decodeWith decodes ids with the tokenizer of the model folder dir, up to its end-of-sequence id.
func decodeWith(t *testing.T, dir string, ids []int) string {
	t.Helper()
	tok, err := tokenizer.Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	if i := slices.Index(ids, tok.EOS()); i >= 0 {
		ids = ids[:i]
	}
	return tok.Decode(ids)
}
