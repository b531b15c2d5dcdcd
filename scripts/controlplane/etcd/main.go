// Command etcd is etcd's own server, built as a program of this module so that
// scripts/build-control-plane.sh can pin its version in go.mod.
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() {
	etcdmain.Main(os.Args)
}
