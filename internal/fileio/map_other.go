//go:build !unix

package fileio

import "os"

// Map reads the first size bytes of the open file into memory: this system has no mapping here.
func Map(fh *os.File, size int64) ([]byte, func(), error) { return readPrefix(fh, size) }
