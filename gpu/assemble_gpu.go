//go:build gpu

package gpu

import (
	"fmt"

	"github.com/flextrain/flextrain/model/ops"
)

// Assemble sets out [len(src), D] to the decoder's input rows, each from the table its source names: the
// embeddings tokens [V, D], the projected image features image [K·n, D], the HR features hr (empty buffers
// where the batch has none), zeros for padding (ops.Assemble).
func (d *Device) Assemble(out, tokens, image, hr Buffer, src []ops.Source, D int) error {
	if out.n != len(src)*D || len(src) == 0 {
		return fmt.Errorf("gpu: Assemble: %d values for %d rows of %d", out.n, len(src), D)
	}
	for _, s := range src {
		if t := map[ops.SourceKind]Buffer{ops.FromToken: tokens, ops.FromImage: image, ops.FromHR: hr}[s.Kind]; s.Kind != ops.FromPad && (s.Index < 0 || (s.Index+1)*D > t.n) {
			return fmt.Errorf("gpu: Assemble: source %+v is outside its table of %d values", s, t.n)
		}
	}
	kind, index := sourceArrays(src)
	kb, err := newBuffer(d, kind)
	if err != nil {
		return err
	}
	defer d.Free(kb)
	ib, err := newBuffer(d, index)
	if err != nil {
		return err
	}
	defer d.Free(ib)
	return d.launch("gather_rows", Elementwise(out.n), out.ptr, kb.ptr, ib.ptr, tokens.ptr, image.ptr, hr.ptr, int64(len(src)), int64(D))
}

// AssembleGrad sets dtable [rows, D], the gradient of the table of kind (ops.FromToken or ops.FromImage),
// from the assembled rows' gradient g: each table row the sum, in row order, of the rows it fed.
func (d *Device) AssembleGrad(dtable, g Buffer, src []ops.Source, kind ops.SourceKind, D int) error {
	rows := dtable.n / max(D, 1)
	if g.n != len(src)*D || dtable.n != rows*D || rows == 0 {
		return fmt.Errorf("gpu: AssembleGrad: g %d and table %d values for %d rows of %d", g.n, dtable.n, len(src), D)
	}
	start, from := feeders(src, kind, rows)
	sb, err := newBuffer(d, start)
	if err != nil {
		return err
	}
	defer d.Free(sb)
	fb := Buffer{}
	if len(from) > 0 {
		if fb, err = newBuffer(d, from); err != nil {
			return err
		}
		defer d.Free(fb)
	}
	return d.launch("scatter_rows", Elementwise(dtable.n), dtable.ptr, g.ptr, sb.ptr, fb.ptr, int64(rows), int64(D))
}

// PatchEmbed sets y [images·g², C] to the tower's patch embedding of images [images, 3, S, S] with the
// convolution's weight w [C, 3, P, P] (no bias, as CLIP's): the patches laid out as model's lrPatches, then
// one product.
func (d *Device) PatchEmbed(y, px, w Buffer, images, S, P, C int) error {
	g := S / P
	if px.n != images*3*S*S || w.n != C*3*P*P || y.n != images*g*g*C || S%P != 0 {
		return fmt.Errorf("gpu: PatchEmbed: images %d, w %d, y %d values for %d images of %d² in patches of %d², width %d", px.n, w.n, y.n, images, S, P, C)
	}
	patches, err := d.Alloc(images * g * g * 3 * P * P)
	if err != nil {
		return err
	}
	defer d.Free(patches)
	if err := d.launch("im2col", Elementwise(patches.n), patches.ptr, px.ptr, int64(images), int64(S), int64(P)); err != nil {
		return err
	}
	return d.MatMulNT(y, patches, w, images*g*g, 3*P*P, C)
}
