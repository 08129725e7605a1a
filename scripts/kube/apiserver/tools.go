//go:build tools

// The test cluster's control plane, built from the Go module proxy: kube-apiserver from
// k8s.io/kubernetes (its staging modules replaced by their published versions) and the etcd it is
// tested with.
package tools

import (
	_ "go.etcd.io/etcd/server/v3"
	_ "k8s.io/kubernetes/cmd/kube-apiserver"
)
