//go:build gpu

package main

func init() { builtWith = append(builtWith, "gpu") }
