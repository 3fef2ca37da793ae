package main

import "strings"

// builtWith are the build tags of this test binary (tags_mpi_test.go and tags_gpu_test.go add theirs): the
// command under test is built with the same.
var builtWith []string

// buildTags is go build's flag for builtWith, or nothing.
func buildTags() []string {
	if len(builtWith) == 0 {
		return nil
	}
	return []string{"-tags", strings.Join(builtWith, " ")}
}
