//go:build !unix

package main

import "os/exec"

// ownGroup leaves cmd as it is: without process groups, cancelling kills
// only the go command itself.
func ownGroup(*exec.Cmd) {}
