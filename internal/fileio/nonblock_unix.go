//go:build unix

package fileio

import "syscall"

// nonBlock makes the open of a FIFO return at once instead of waiting for a writer.
const nonBlock = syscall.O_NONBLOCK
