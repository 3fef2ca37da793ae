//go:build unix

package torchfile

import (
	"os"

	"golang.org/x/sys/unix"
)

// load maps the file of size bytes privately (copy-on-write: writing to the tensors never reaches the
// file) and returns the mapping with the function that unmaps it; where the file system cannot map it, the
// file is read into memory instead.
func load(fh *os.File, size int64) ([]byte, func(), error) {
	b, err := unix.Mmap(int(fh.Fd()), 0, int(size), unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE)
	if err != nil {
		return readAll(fh, size)
	}
	return b, func() { unix.Munmap(b) }, nil
}
