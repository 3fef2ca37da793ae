//go:build !unix

package torchfile

import "os"

// load reads the file of size bytes into memory: this system has no mapping here.
func load(fh *os.File, size int64) ([]byte, func(), error) { return readAll(fh, size) }
