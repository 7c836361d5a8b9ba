// Command etcd is the etcd server, built from the official go.etcd.io/etcd/server/v3 module
// for the real Kubernetes control plane the Rust tests start (tests/support/control_plane.rs).
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() {
	etcdmain.Main(os.Args)
}
