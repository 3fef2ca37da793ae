package synth_test

import (
	"image"
	"image/color"
	"image/png"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/flextrain/flextrain/data"
)

func toImg(t []float32, side int) *image.RGBA {
	mean := []float32{0.48145466, 0.4578275, 0.40821073}
	std := []float32{0.26862954, 0.26130258, 0.27577711}
	img := image.NewRGBA(image.Rect(0, 0, side, side))
	for y := 0; y < side; y++ {
		for x := 0; x < side; x++ {
			var c [3]uint8
			for p := 0; p < 3; p++ {
				v := (t[(p*side+y)*side+x]*std[p] + mean[p]) * 255
				c[p] = uint8(min(max(v+0.5, 0), 255))
			}
			img.Set(x, y, color.RGBA{c[0], c[1], c[2], 255})
		}
	}
	return img
}

func TestPreview(t *testing.T) {
	src := os.Getenv("PREVIEW_SRC")
	if src == "" {
		t.Skip()
	}
	out := os.Getenv("PREVIEW_OUT")
	os.MkdirAll(out, 0o755)
	for _, name := range strings.Split(os.Getenv("PREVIEW_NAMES"), ",") {
		f, _ := os.Open(filepath.Join(src, name))
		img, err := png.Decode(f)
		f.Close()
		if err != nil {
			t.Fatal(err)
		}
		px, err := data.PreprocessImage(img, 64, 3)
		if err != nil {
			t.Fatal(err)
		}
		hr, lr := toImg(px.HR, 192), toImg(px.LR, 64)
		comb := image.NewRGBA(image.Rect(0, 0, 192*3*2+8, 192*3))
		for y := 0; y < 576; y++ {
			for x := 0; x < 576; x++ {
				comb.Set(x, y, hr.At(x/3, y/3))
				comb.Set(584+x, y, lr.At(x/9, y/9))
			}
		}
		g, _ := os.Create(filepath.Join(out, name))
		png.Encode(g, comb)
		g.Close()
	}
}
