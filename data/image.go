package data

import (
	"bufio"
	"errors"
	"fmt"
	"image"
	"image/color"
	"image/draw"
	_ "image/gif" // first frame of GIFs
	_ "image/jpeg"
	_ "image/png"
	"io"
	"io/fs"
	"math"
	"os"
	"path/filepath"
	"strings"

	xdraw "golang.org/x/image/draw"

	"github.com/flextrain/flextrain/internal/fileio"

	_ "golang.org/x/image/bmp"
	_ "golang.org/x/image/webp"
)

// Image limits checked on the header, before any pixel is decoded: a 100000×100000 PNG must cost bytes,
// not gigabytes. Within them, Options.ImageMaxPixels sets the budget of one image (see checkBudget).
const (
	// MaxImageSide bounds either side of any image, whatever the budget.
	MaxImageSide = 16384
	// MaxImagePixels is the largest budget Options.ImageMaxPixels accepts, and the budget of
	// PreprocessImage, which pads an image already decoded.
	MaxImagePixels = 100_000_000
	// DefaultImageMaxPixels is the budget when Options.ImageMaxPixels is zero: 4096². The images of LLaVA's
	// training mix (COCO, GQA, OCR-VQA, TextVQA, VG) are typically a megapixel or two, well within it, and
	// one image costs a worker at most 64 MiB of decoded pixels and 64 MiB of padded square.
	DefaultImageMaxPixels = 4096 * 4096
)

// CLIP's normalisation (docs/DESIGN.md §4) and the pad colour LLaVA derives from the mean: int(m·255).
var (
	clipMean = [3]float32{0.48145466, 0.4578275, 0.40821073}
	clipStd  = [3]float32{0.26862954, 0.26130258, 0.27577711}
	padColor = color.RGBA{122, 116, 104, 255}
)

// fallbackExts are tried, in order, when the recorded image file is missing (OCR-VQA files were re-saved
// under another extension; FlexAttention's prepare_data.py does the same search).
var fallbackExts = []string{".jpg", ".jpeg", ".png", ".gif"}

// Sentinel errors of the image path; each maps to one bad-sample reason.
var (
	ErrImageMissing   = errors.New("data: image missing")
	ErrImageOutside   = errors.New("data: image path outside image_folder")
	ErrImageTooLarge  = errors.New("data: image dimensions too large")
	ErrImageUndecoded = errors.New("data: image cannot be decoded")
)

// ResolveImage turns a record's image field into a file inside folder. It refuses absolute paths, `..`
// escapes and symlinks that lead outside folder (ErrImageOutside, nothing opened), and tries the fallback
// extensions when the recorded file is missing (ErrImageMissing when none exists).
func ResolveImage(folder, rel string) (string, error) {
	if rel == "" || filepath.IsAbs(rel) || strings.HasPrefix(rel, "/") || strings.HasPrefix(rel, `\`) {
		return "", fmt.Errorf("%w: %q", ErrImageOutside, rel)
	}
	clean := filepath.Clean(filepath.FromSlash(rel))
	if clean == ".." || strings.HasPrefix(clean, ".."+string(filepath.Separator)) || filepath.VolumeName(clean) != "" {
		return "", fmt.Errorf("%w: %q", ErrImageOutside, rel)
	}
	for _, p := range candidates(filepath.Join(folder, clean)) {
		ok, err := insideFolder(folder, p)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return "", err
		}
		if !ok {
			return "", fmt.Errorf("%w: %q resolves outside %s", ErrImageOutside, rel, folder)
		}
		return p, nil
	}
	return "", fmt.Errorf("%w: %s (also tried %s)", ErrImageMissing, filepath.Join(folder, clean), strings.Join(fallbackExts, " "))
}

// candidates lists the recorded path first, then the same name with each fallback extension.
func candidates(p string) []string {
	stem := strings.TrimSuffix(p, filepath.Ext(p))
	out := []string{p}
	for _, ext := range fallbackExts {
		if c := stem + ext; c != p {
			out = append(out, c)
		}
	}
	return out
}

// insideFolder reports whether p, with every symlink followed, is a regular file under folder.
func insideFolder(folder, p string) (bool, error) {
	real, err := filepath.EvalSymlinks(p)
	if err != nil {
		return false, err
	}
	root, err := filepath.EvalSymlinks(folder)
	if err != nil {
		return false, fmt.Errorf("data: image_folder %s: %w", folder, err)
	}
	rel, err := filepath.Rel(root, real)
	if err != nil || rel == ".." || strings.HasPrefix(rel, ".."+string(filepath.Separator)) {
		return false, nil
	}
	st, err := os.Stat(real)
	if err != nil {
		return false, err
	}
	if !st.Mode().IsRegular() {
		return false, fs.ErrNotExist
	}
	return true, nil
}

// LoadImage is LoadImageWithin with the default budget, DefaultImageMaxPixels.
func LoadImage(path string) (image.Image, error) { return LoadImageWithin(path, DefaultImageMaxPixels) }

// LoadImageWithin opens and decodes an image file (JPEG, PNG, GIF first frame, WebP, BMP). It reads the
// header first and refuses an image past the budget of maxPixels (ErrImageTooLarge, see checkBudget)
// before decoding; a broken or truncated file gives ErrImageUndecoded. A path that is absent or not a
// regular file (a FIFO, a device, a directory) gives ErrImageMissing at once: opening a FIFO would wait
// for a writer, and /dev/zero never ends.
func LoadImageWithin(path string, maxPixels int64) (image.Image, error) {
	f, err := fileio.Open(path)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) || errors.Is(err, fileio.ErrNotRegular) {
			return nil, fmt.Errorf("%w: %w", ErrImageMissing, err)
		}
		return nil, fmt.Errorf("data: open image %s: %w", path, err)
	}
	defer f.Close()
	img, err := DecodeImageWithin(f, maxPixels)
	if err != nil {
		return nil, fmt.Errorf("%w (%s)", err, path)
	}
	return img, nil
}

// DecodeImage is DecodeImageWithin with the default budget, DefaultImageMaxPixels.
func DecodeImage(r io.ReadSeeker) (image.Image, error) {
	return DecodeImageWithin(r, DefaultImageMaxPixels)
}

// DecodeImageWithin decodes one image from r after checking its header against MaxImageSide and the
// budget of maxPixels (≤ 0: DefaultImageMaxPixels; at most MaxImagePixels). An image past them is refused
// without decoding a pixel.
//
// Decoding at a reduced size would let a large image in at a fraction of the cost, but no decoder at
// hand can: image/jpeg has no DCT scaling (libjpeg's scale_num/scale_denom), golang.org/x/image has no
// JPEG decoder, and PNG, GIF, BMP and WebP decode whole frames. So an image past the budget is refused.
func DecodeImageWithin(r io.ReadSeeker, maxPixels int64) (image.Image, error) {
	cfg, format, err := image.DecodeConfig(bufio.NewReader(r))
	if err != nil {
		return nil, fmt.Errorf("%w: header: %v", ErrImageUndecoded, err)
	}
	if err := checkBudget(cfg, format, maxPixels); err != nil {
		return nil, err
	}
	if _, err := r.Seek(0, io.SeekStart); err != nil {
		return nil, fmt.Errorf("data: rewind image: %w", err)
	}
	img, _, err := image.Decode(bufio.NewReader(r))
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrImageUndecoded, err)
	}
	if b := img.Bounds(); b.Dx() != cfg.Width || b.Dy() != cfg.Height {
		return nil, fmt.Errorf("%w: header says %dx%d, pixels are %dx%d", ErrImageUndecoded, cfg.Width, cfg.Height, b.Dx(), b.Dy())
	}
	return img, nil
}

// checkDims refuses empty images and the ones past MaxImageSide, or whose padded square (PadToSquare)
// would hold more than MaxImagePixels.
func checkDims(w, h int) error {
	if w <= 0 || h <= 0 {
		return fmt.Errorf("%w: empty image %dx%d", ErrImageUndecoded, w, h)
	}
	if w > MaxImageSide || h > MaxImageSide || squarePixels(w, h) > MaxImagePixels {
		return fmt.Errorf("%w: %dx%d (limits: %d per side, %d pixels padded to a square)", ErrImageTooLarge, w, h, MaxImageSide, MaxImagePixels)
	}
	return nil
}

// squarePixels is the number of pixels of the square PadToSquare makes of a w×h image.
func squarePixels(w, h int) int64 {
	side := int64(max(w, h))
	return side * side
}

// PadToSquare centres img on a square of side max(w, h) filled with the CLIP mean colour (122,116,104), as
// LLaVA's expand2square does. Alpha is dropped without compositing, as PIL's convert("RGB") does. The
// square costs 4·max(w, h)² bytes: a 16000×1000 image would make a 1 GB square, so the image budget
// (checkBudget, checkDims) counts the square, not the image.
func PadToSquare(img image.Image) *image.RGBA {
	b := img.Bounds()
	w, h := b.Dx(), b.Dy()
	side := max(w, h)
	dst := image.NewRGBA(image.Rect(0, 0, side, side))
	draw.Draw(dst, dst.Bounds(), image.NewUniform(padColor), image.Point{}, draw.Src)
	at := SquareOffset(w, h)
	copyRGB(dst, image.Rectangle{at, at.Add(image.Pt(w, h))}, img)
	return dst
}

// SquareOffset is where PadToSquare puts the top-left corner of a w×h image in its square.
func SquareOffset(w, h int) image.Point {
	side := max(w, h)
	return image.Pt((side-w)/2, (side-h)/2)
}

// copyRGB copies the colour channels of src into dst at r with alpha 255.
func copyRGB(dst *image.RGBA, r image.Rectangle, src image.Image) {
	sb := src.Bounds()
	if o, ok := src.(interface{ Opaque() bool }); ok && o.Opaque() {
		draw.Draw(dst, r, src, sb.Min, draw.Src)
		return
	}
	if n, ok := src.(*image.NRGBA); ok {
		for y := 0; y < r.Dy(); y++ {
			row := n.Pix[n.PixOffset(sb.Min.X, sb.Min.Y+y):]
			out := dst.Pix[dst.PixOffset(r.Min.X, r.Min.Y+y):]
			for x := 0; x < r.Dx(); x++ {
				copy(out[4*x:4*x+3], row[4*x:4*x+3])
				out[4*x+3] = 255
			}
		}
		return
	}
	for y := 0; y < r.Dy(); y++ {
		for x := 0; x < r.Dx(); x++ {
			c := color.NRGBAModel.Convert(src.At(sb.Min.X+x, sb.Min.Y+y)).(color.NRGBA)
			dst.SetRGBA(r.Min.X+x, r.Min.Y+y, color.RGBA{c.R, c.G, c.B, 255})
		}
	}
}

// Pixels are the two views of one image that the model reads (docs/DESIGN.md §4).
type Pixels struct {
	HR      []float32 // [3, Z·S, Z·S], CLIP-normalised
	LR      []float32 // [3, S, S], HR downsampled by Z (bilinear, antialiased)
	OriSize [2]int    // the original (w, h), before padding
}

// PreprocessImage turns a decoded image into Pixels: pad to square, bicubic resize to the HR side z·s (x/image
// Catmull-Rom, the a=-0.5 cubic of PIL's BICUBIC), rescale by 1/255, CLIP mean/std normalisation, and the
// LR view as the normalised HR tensor downsampled by z.
func PreprocessImage(img image.Image, s, z int) (Pixels, error) {
	if s <= 0 || z <= 0 {
		return Pixels{}, fmt.Errorf("data: preprocess image: sizes must be positive, got S=%d Z=%d", s, z)
	}
	b := img.Bounds()
	if err := checkDims(b.Dx(), b.Dy()); err != nil {
		return Pixels{}, err
	}
	sq := PadToSquare(img) // bounded by checkDims: at most MaxImagePixels, 400 MB
	hrSide := z * s
	hr := image.NewRGBA(image.Rect(0, 0, hrSide, hrSide))
	xdraw.CatmullRom.Scale(hr, hr.Bounds(), sq, sq.Bounds(), xdraw.Src, nil)
	t := Normalize(hr)
	return Pixels{HR: t, LR: DownsampleAA(t, 3, hrSide, z), OriSize: [2]int{b.Dx(), b.Dy()}}, nil
}

// Denormalize is Normalize's inverse for a [3, side, side] tensor, for drawing what the model read: each
// value back to 0…255, rounded and clipped.
func Denormalize(t []float32, side int) *image.RGBA {
	img := image.NewRGBA(image.Rect(0, 0, side, side))
	plane := side * side
	for i := range plane {
		for c := range 3 {
			v := math.Round(float64((t[c*plane+i]*clipStd[c] + clipMean[c]) * 255))
			img.Pix[4*i+c] = uint8(min(max(v, 0), 255))
		}
		img.Pix[4*i+3] = 255
	}
	return img
}

// Normalize converts an RGBA image to a [3, H, W] float32 tensor: v/255, then (v − mean)/std per channel.
func Normalize(img *image.RGBA) []float32 {
	b := img.Bounds()
	w, h := b.Dx(), b.Dy()
	out := make([]float32, 3*w*h)
	var lut [3][256]float32 // 256 values per channel: a table is exact and cheaper than the arithmetic
	for c := range 3 {
		for v := range 256 {
			lut[c][v] = (float32(v)/255 - clipMean[c]) / clipStd[c]
		}
	}
	plane := w * h
	for y := range h {
		row := img.Pix[img.PixOffset(b.Min.X, b.Min.Y+y):]
		for x := range w {
			i := y*w + x
			out[i] = lut[0][row[4*x]]
			out[plane+i] = lut[1][row[4*x+1]]
			out[2*plane+i] = lut[2][row[4*x+2]]
		}
	}
	return out
}
