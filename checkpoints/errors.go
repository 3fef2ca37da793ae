package checkpoints

import "errors"

// Sentinel errors. Every error this package returns that reports one of these cases wraps the sentinel
// (test with errors.Is) and names the file or directory concerned.
var (
	// ErrCorrupt reports a checkpoint or file whose bytes fail verification: a checksum mismatch, a
	// truncation, a size or manifest disagreement, or a payload that does not parse.
	ErrCorrupt = errors.New("checkpoints: corrupt")
	// ErrVersion reports a file whose magic or format version this build does not read.
	ErrVersion = errors.New("checkpoints: unknown format or version")
	// ErrNotFound reports a missing checkpoint, or a directory that holds no complete one.
	ErrNotFound = errors.New("checkpoints: not found")
	// ErrConfigMismatch is for callers that compare the configuration stored in a checkpoint with the
	// one of the run that resumes it; this package defines it so every layer shares one sentinel.
	ErrConfigMismatch = errors.New("checkpoints: configuration mismatch")
)
