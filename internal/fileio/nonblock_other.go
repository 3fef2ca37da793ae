//go:build !unix

package fileio

// nonBlock is 0 where the system has no O_NONBLOCK; the type check after the open still applies.
const nonBlock = 0
