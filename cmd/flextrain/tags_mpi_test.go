//go:build mpi

package main

func init() { builtWith = append(builtWith, "mpi") }
