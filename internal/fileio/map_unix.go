//go:build unix

package fileio

import (
	"os"

	"golang.org/x/sys/unix"
)

// Map maps the first size bytes of the open file privately (copy-on-write: writing to the bytes never
// reaches the file) and returns them with the function that unmaps them; where the file system cannot map
// the file, it is read into memory instead (release then does nothing). Mapped weights cost memory only for
// the pages touched, and the kernel can drop those again under pressure, since the file holds them. A file
// truncated while mapped makes a later access past its new end fault (a crash, unless the reader runs
// under debug.SetPanicOnFault); weights are replaced by rename, never rewritten in place.
func Map(fh *os.File, size int64) ([]byte, func(), error) {
	if size == 0 {
		return []byte{}, func() {}, nil
	}
	b, err := unix.Mmap(int(fh.Fd()), 0, int(size), unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE)
	if err != nil {
		return readPrefix(fh, size)
	}
	return b, func() { unix.Munmap(b) }, nil
}
