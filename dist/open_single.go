//go:build !mpi

package dist

// Open returns the group this process belongs to. Without the mpi build tag it is Single, and a process that
// an MPI launcher started as one of several ranks is refused (ErrNoMPI): trained alone, each would write
// the same output_dir.
func Open() (Comm, error) {
	if launched() {
		return nil, ErrNoMPI
	}
	return Single{}, nil
}
