// etcdpeer - grpc-go 1.33 and etcd's clientv3 3.4 naming packages, as their
// users run them, for test_register_peers.sh and bench/register_bench.sh.
// Built offline from Debian's golang-google-grpc-dev and
// golang-etcd-server-dev (GO111MODULE=off, GOPATH=/usr/share/gocode).
//
//	etcdpeer call -etcd URL -service NAME [-n N] [-interval-ms MS]
//	    dials etcd:///NAME through go.etcd.io/etcd/clientv3/naming/resolver
//	    (round_robin) and calls grpc.health.v1.Health/Check every MS
//	    (default 20) N times (0: until killed).  One line per call on
//	    stdout: "MS_SINCE_EPOCH ok ADDRESS STATUS" or "MS_SINCE_EPOCH fail
//	    ERROR".
//
//	etcdpeer publish -etcd URL -service NAME -addr HOST:PORT [-ttl S]
//	    grpc-go's publisher: endpoints.Manager.AddEndpoint of NAME/HOST:PORT
//	    under a lease of S seconds (default 10) kept alive with KeepAlive;
//	    prints "lease ID" (decimal) once the key is written, then runs until
//	    killed.  SIGTERM deletes the key first (DeleteEndpoint).
package main

import (
	"context"
	"flag"
	"fmt"
	"io/ioutil"
	"os"
	"os/signal"
	"syscall"
	"time"

	clientv3 "go.etcd.io/etcd/clientv3"
	"go.etcd.io/etcd/clientv3/naming/endpoints"
	"go.etcd.io/etcd/clientv3/naming/resolver"
	"go.uber.org/zap"
	"google.golang.org/grpc"
	"google.golang.org/grpc/grpclog"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/peer"
)

func nowMs() int64 { return time.Now().UnixNano() / 1e6 }

func etcdClient(url string) *clientv3.Client {
	lc := zap.NewProductionConfig()
	lc.Level = zap.NewAtomicLevelAt(zap.ErrorLevel)
	c, err := clientv3.New(clientv3.Config{Endpoints: []string{url}, DialTimeout: 5 * time.Second,
		LogConfig: &lc})
	if err != nil {
		fmt.Fprintln(os.Stderr, "etcdpeer: etcd client:", err)
		os.Exit(1)
	}
	return c
}

func call(args []string) {
	fs := flag.NewFlagSet("call", flag.ExitOnError)
	url := fs.String("etcd", "", "etcd URL")
	service := fs.String("service", "", "service (the key prefix without its slash)")
	n := fs.Int("n", 0, "calls (0: until killed)")
	interval := fs.Int("interval-ms", 20, "between calls")
	fs.Parse(args)
	cli := etcdClient(*url)
	b, err := resolver.NewBuilder(cli)
	if err != nil {
		fmt.Fprintln(os.Stderr, "etcdpeer: resolver:", err)
		os.Exit(1)
	}
	conn, err := grpc.Dial("etcd:///"+*service, grpc.WithInsecure(), grpc.WithResolvers(b),
		grpc.WithDefaultServiceConfig(`{"loadBalancingConfig":[{"round_robin":{}}]}`))
	if err != nil {
		fmt.Fprintln(os.Stderr, "etcdpeer: dial:", err)
		os.Exit(1)
	}
	hc := healthpb.NewHealthClient(conn)
	for i := 0; *n == 0 || i < *n; i++ {
		var p peer.Peer
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		// Wait for READY: a call made before the resolver's first answer
		// waits for it instead of failing at once.
		resp, err := hc.Check(ctx, &healthpb.HealthCheckRequest{}, grpc.Peer(&p), grpc.WaitForReady(true))
		cancel()
		if err != nil {
			fmt.Printf("%d fail %v\n", nowMs(), err)
		} else {
			fmt.Printf("%d ok %s %s\n", nowMs(), p.Addr, resp.Status)
		}
		time.Sleep(time.Duration(*interval) * time.Millisecond)
	}
}

func publish(args []string) {
	fs := flag.NewFlagSet("publish", flag.ExitOnError)
	url := fs.String("etcd", "", "etcd URL")
	service := fs.String("service", "", "service (the key prefix without its slash)")
	addr := fs.String("addr", "", "host:port")
	ttl := fs.Int64("ttl", 10, "lease TTL (s)")
	fs.Parse(args)
	cli := etcdClient(*url)
	em, err := endpoints.NewManager(cli, *service)
	if err != nil {
		fmt.Fprintln(os.Stderr, "etcdpeer: manager:", err)
		os.Exit(1)
	}
	ctx := context.Background()
	lease, err := cli.Grant(ctx, *ttl)
	if err != nil {
		fmt.Fprintln(os.Stderr, "etcdpeer: grant:", err)
		os.Exit(1)
	}
	key := *service + "/" + *addr
	if err := em.AddEndpoint(ctx, key, endpoints.Endpoint{Addr: *addr}, clientv3.WithLease(lease.ID)); err != nil {
		fmt.Fprintln(os.Stderr, "etcdpeer: add endpoint:", err)
		os.Exit(1)
	}
	ka, err := cli.KeepAlive(ctx, lease.ID)
	if err != nil {
		fmt.Fprintln(os.Stderr, "etcdpeer: keepalive:", err)
		os.Exit(1)
	}
	fmt.Printf("lease %d\n", lease.ID)
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT)
	for {
		select {
		case _, ok := <-ka:
			if !ok {
				fmt.Fprintln(os.Stderr, "etcdpeer: keepalive channel closed")
				os.Exit(1)
			}
		case <-sig:
			em.DeleteEndpoint(ctx, key)
			os.Exit(0)
		}
	}
}

func main() {
	grpclog.SetLoggerV2(grpclog.NewLoggerV2(ioutil.Discard, ioutil.Discard, os.Stderr))
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: etcdpeer call|publish ...")
		os.Exit(2)
	}
	switch os.Args[1] {
	case "call":
		call(os.Args[2:])
	case "publish":
		publish(os.Args[2:])
	default:
		fmt.Fprintln(os.Stderr, "etcdpeer: unknown verb", os.Args[1])
		os.Exit(2)
	}
}
