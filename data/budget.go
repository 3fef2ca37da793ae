package data

import (
	"fmt"
	"image"
	"image/color"
)

// checkBudget refuses, from the header alone, an image that would cost more than its budget of maxPixels
// (≤ 0: DefaultImageMaxPixels; at most MaxImagePixels) before a pixel is decoded:
//
//   - pixels: the square PadToSquare pads the image to, max(w, h)², must hold at most maxPixels (which
//     bounds w·h too): it is allocated at 4 bytes a pixel whatever the image;
//   - decoded bytes: what the decoder allocates (decodedBytesPerPixel), at most 4·maxPixels. A 16-bit PNG
//     costs 8 bytes a pixel, so a 778 KB file of 100 megapixels decoded to 800 MB.
func checkBudget(cfg image.Config, format string, maxPixels int64) error {
	w, h := cfg.Width, cfg.Height
	if err := checkDims(w, h); err != nil {
		return err
	}
	maxPixels = imageBudget(maxPixels)
	if sq := squarePixels(w, h); sq > maxPixels {
		return fmt.Errorf("%w: %dx%d pads to a square of %d pixels; the limit is %d (image_max_pixels)", ErrImageTooLarge, w, h, sq, maxPixels)
	}
	if b := int64(w) * int64(h) * decodedBytesPerPixel(format, cfg.ColorModel); b > 4*maxPixels {
		return fmt.Errorf("%w: %dx%d %s decodes to %d bytes; the limit is %d (4 × image_max_pixels)", ErrImageTooLarge, w, h, format, b, 4*maxPixels)
	}
	return nil
}

// decodedBytesPerPixel bounds the bytes a decoder allocates per pixel, from the format and the colour model
// that image.DecodeConfig reports: the decoded image, plus what the decoder fills before converting.
//
//   - paletted, 8-bit gray: 1; but a gray PNG with a tRNS chunk, which DecodeConfig does not read,
//     decodes to NRGBA (4), or NRGBA64 (8) when 16-bit, so gray PNGs count 4 and 8;
//   - YCbCr: 3 at most (4:4:4);
//   - RGBA, NRGBA, CMYK: 4; but a JPEG decodes into YCbCr planes first (3, or 4 with the K plane), and a
//     lossless WebP may copy its NRGBA pixels for the colour-indexing transform, so 8;
//   - WebP with alpha (NYCbCrA) decodes its alpha plane through an NRGBA image: 8;
//   - 16-bit (RGBA64, NRGBA64) and any other model: 8.
//
// Not counted: the transient buffers of an interlaced PNG (one image per Adam7 pass, as large as the
// image in all) and of a progressive JPEG (4 bytes per sample of coefficients), which only a second
// parse of the file could tell; they stay within a small factor of the budget.
func decodedBytesPerPixel(format string, cm color.Model) int64 {
	if _, ok := cm.(color.Palette); ok {
		return 1
	}
	switch cm {
	case color.GrayModel:
		if format == "png" {
			return 4
		}
		return 1
	case color.Gray16Model:
		if format == "png" {
			return 8
		}
		return 2
	case color.YCbCrModel:
		return 3
	case color.RGBAModel, color.NRGBAModel, color.CMYKModel:
		if format == "jpeg" || format == "webp" {
			return 8
		}
		return 4
	}
	return 8
}

// imageBudget is maxPixels with the default for ≤ 0 and the ceiling MaxImagePixels applied.
func imageBudget(maxPixels int64) int64 {
	if maxPixels <= 0 {
		return DefaultImageMaxPixels
	}
	return min(maxPixels, MaxImagePixels)
}
