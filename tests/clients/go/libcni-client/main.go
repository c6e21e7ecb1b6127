// libcni-client drives a CNI network list through libcni, as cnitool and the
// kubelet-era runtimes do: results are cached under -cache-dir, and CHECK and
// DEL get the cached result as prevResult.
//
//	libcni-client -conflist F -path DIR[:DIR] -cache-dir D -netns P -id ID [-ifname eth0] [-args K=V;K=V] add|check|del|validate
//
// add prints the result on stdout; every failure goes to stderr with exit 1.
// Built offline from Debian's golang-github-appc-cni-dev:
//
//	GO111MODULE=off GOPATH=/usr/share/gocode go build -o libcni-client .
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/containernetworking/cni/libcni"
)

func main() {
	conflist := flag.String("conflist", "", "network config list file")
	path := flag.String("path", "", "CNI_PATH: plugin directories separated by ':'")
	cacheDir := flag.String("cache-dir", "", "libcni's result cache")
	netns := flag.String("netns", "", "the container's network namespace path")
	id := flag.String("id", "", "container ID")
	ifname := flag.String("ifname", "eth0", "interface name in the container")
	args := flag.String("args", "", "CNI_ARGS as K=V;K=V")
	flag.Parse()
	if flag.NArg() != 1 || *conflist == "" || *path == "" {
		fmt.Fprintln(os.Stderr, "usage: libcni-client -conflist F -path DIRS [options] add|check|del|validate")
		os.Exit(2)
	}
	if err := run(flag.Arg(0), *conflist, *path, *cacheDir, *netns, *id, *ifname, *args); err != nil {
		fmt.Fprintf(os.Stderr, "libcni-client %s: %v\n", flag.Arg(0), err)
		os.Exit(1)
	}
}

func run(verb, conflist, path, cacheDir, netns, id, ifname, args string) error {
	list, err := libcni.ConfListFromFile(conflist)
	if err != nil {
		return err
	}
	cni := libcni.NewCNIConfigWithCacheDir(filepath.SplitList(path), cacheDir, nil)
	rt := &libcni.RuntimeConf{ContainerID: id, NetNS: netns, IfName: ifname}
	for _, kv := range strings.Split(args, ";") {
		if k, v, ok := strings.Cut(kv, "="); ok {
			rt.Args = append(rt.Args, [2]string{k, v})
		}
	}
	ctx := context.Background()
	switch verb {
	case "add":
		result, err := cni.AddNetworkList(ctx, list, rt)
		if err != nil {
			return err
		}
		return result.Print()
	case "check":
		return cni.CheckNetworkList(ctx, list, rt)
	case "del":
		return cni.DelNetworkList(ctx, list, rt)
	case "validate":
		_, err := cni.ValidateNetworkList(ctx, list)
		return err
	}
	return fmt.Errorf("unknown verb %q", verb)
}
