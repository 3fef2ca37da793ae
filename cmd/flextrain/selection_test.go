package main

import (
	"bytes"
	"encoding/json"
	"image/png"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// testSelection: `selection` measures --n images, draws --draw of them, prints a line per drawn image and
// one per FlexAttention layer, and refuses a kind the data does not have.
func testSelection(t *testing.T, r run) {
	out := filepath.Join(t.TempDir(), "sel.png")
	var buf bytes.Buffer
	if err := selectionMain([]string{"--checkpoint", r.ckpt, "--data", r.data.Val, "--n", "3", "--draw", "2", "--out", out}, &buf); err != nil {
		t.Fatalf("selection: %v", err)
	}
	lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
	layers := r.cfg.Arch.Text.NumLayers - r.cfg.Flex.NSA
	if len(lines) != 1+2+layers || lines[0] != "wrote "+out+": 2 images" ||
		!strings.HasPrefix(lines[len(lines)-1], "layer 1 over 3 images: ") || !strings.Contains(lines[1], "box ") {
		t.Errorf("selection printed:\n%s\nwant the file, 2 images with their box coverage, and %d layer summary", buf.String(), layers)
	}
	f, err := os.Open(out)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	img, err := png.Decode(f)
	if err != nil {
		t.Fatalf("%s: %v", out, err)
	}
	if b := img.Bounds(); b.Dy() < 2*b.Dx()/layers {
		t.Errorf("figure is %v; want two rows of %d tiles", b, layers)
	}
	buf.Reset()
	if err := selectionMain([]string{"--checkpoint", r.ckpt, "--data", r.data.Val, "--n", "3", "--draw", "0", "--json"}, &buf); err != nil {
		t.Fatalf("selection --json: %v", err)
	}
	var got selectionOutput
	if err := json.Unmarshal(buf.Bytes(), &got); err != nil || got.Images != 3 || len(got.Layers) != layers || got.Layers[0].Boxes != 3 {
		t.Errorf("selection --json printed %s (%v); want 3 images with boxes, %d layers", buf.String(), err, layers)
	}
	buf.Reset()
	if err := selectionMain([]string{"--checkpoint", r.ckpt, "--data", r.data.Val, "--n", "3", "--draw", "0", "--json",
		"--thresholds", "0,128,254.9"}, &buf); err != nil {
		t.Fatalf("selection --thresholds: %v", err)
	}
	got = selectionOutput{}
	if err := json.Unmarshal(buf.Bytes(), &got); err != nil || len(got.Thresholds) != 3 {
		t.Fatalf("selection --thresholds printed %s (%v); want 3 thresholds", buf.String(), err)
	}
	// A higher threshold never selects more; 254.9 keeps only the maximum's cells.
	if th := got.Thresholds; th[0].Selected < th[1].Selected || th[1].Selected < th[2].Selected || th[2].Selected <= 0 {
		t.Errorf("calibration %+v; want shares falling with the threshold, the last above 0", th)
	}
	for _, bad := range []struct {
		name string
		args []string
		text string
	}{
		{"unknown kind", []string{"--kind", "nosuch"}, `no image record of kind "nosuch"`},
		{"no image", []string{"--n", "0"}, "--n must be positive"},
		{"thresholds without json", []string{"--thresholds", "48"}, "add --json"},
	} {
		args := append([]string{"--checkpoint", r.ckpt, "--data", r.data.Val, "--out", out}, bad.args...)
		if err := selectionMain(args, &buf); err == nil || !strings.Contains(err.Error(), bad.text) {
			t.Errorf("%s: err = %v; want one that says %q", bad.name, err, bad.text)
		}
	}
}
