//go:build mpi

package main

// buildTags are the tags the command under test is built with: this test binary's own.
var buildTags = []string{"-tags", "mpi"}
