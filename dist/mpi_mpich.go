//go:build mpi && mpich

// MPICH's compiler and linker flags, from its pkg-config file mpich (Debian: libmpich-dev), chosen with
// the `mpich` build tag.

package dist

// #cgo pkg-config: mpich
import "C"

// library names the MPI this build links, in errors and for the tests' choice of launcher.
const library = "MPICH"
