//go:build !mpi

package dist

import "os"

// Open returns the group this process belongs to. Without the mpi build tag it is Single, and a process that
// an MPI launcher started as one of several ranks is refused (ErrNoMPI): trained alone, each would write
// the same output_dir.
func Open() (Comm, error) {
	if launched() {
		return nil, ErrNoMPI
	}
	return Single{}, nil
}

// launched reports whether an MPI launcher started this process as one of several: the environment
// variables Open MPI, MPICH (Hydra) and SLURM give each rank.
func launched() bool {
	for _, v := range []string{"OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "SLURM_NTASKS"} {
		if n := os.Getenv(v); n != "" && n != "1" {
			return true
		}
	}
	return false
}
