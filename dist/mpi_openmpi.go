//go:build mpi && !mpich

// Open MPI's compiler and linker flags, from its pkg-config file ompi-c (Debian: libopenmpi-dev): the
// default library of the mpi build.

package dist

// #cgo pkg-config: ompi-c
import "C"

// library names the MPI this build links, in errors and for the tests' choice of launcher.
const library = "Open MPI"
