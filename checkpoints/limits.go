package checkpoints

// Bounds on the files Load reads besides the tensor files: each is checked against the file's size before
// the file is read, so no file can make Load allocate more than its bound.
const (
	// maxManifest bounds MANIFEST, which lists four files in well under a kilobyte.
	maxManifest = 1 << 20
	// maxPlainFile bounds trainer_state.json and config.yaml, a few kilobytes each; Save refuses larger ones.
	maxPlainFile = 16 << 20
)

// maxBody is the most bytes a zstd body of raw bytes can take: zstd stores incompressible data in raw
// blocks of at most 128 KiB behind a 3-byte header, plus a frame header and checksum of at most 22 bytes,
// far below raw/128 + 1 KiB. A body larger than this for its claimed raw length is not one Save wrote.
func maxBody(raw int64) int64 { return raw + raw/128 + 1024 }

// maxFrameSize is the most bytes a frame holding at most raw bytes of payload can take on disk.
func maxFrameSize(raw int64) int64 { return headerSize + maxBody(raw) + trailerSize }
