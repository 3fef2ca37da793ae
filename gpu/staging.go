package gpu

// stagingRing hands out the bytes of a staging buffer that uploads pass through, front to back: an
// upload takes the next free bytes (aligned), and when they run out the caller drains the stream, after
// which every copy that read the buffer is done and it starts over from the front. An upload larger than
// a quarter of the buffer does not pass through it (it would drain the stream as often as it fills it).
type stagingRing struct {
	size, used int
}

// stagingAlign keeps each upload's bytes on a boundary the copy engines read fastest.
const stagingAlign = 256

// reserve returns the offset of n bytes for an upload, and whether the stream must be drained before they
// are written (the buffer started over); ok is false for an upload that does not pass through the buffer.
func (r *stagingRing) reserve(n int) (off int, drain, ok bool) {
	if n <= 0 || n > r.size/4 {
		return 0, false, false
	}
	if r.used+n > r.size {
		r.used, drain = 0, true
	}
	off = r.used
	r.used += (n + stagingAlign - 1) / stagingAlign * stagingAlign
	return off, drain, true
}
