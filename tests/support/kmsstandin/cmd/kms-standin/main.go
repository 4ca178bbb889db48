// Command kms-standin serves the KMS stand-in (package kmsstandin) over
// HTTP so that processes (the Lambdas under the runtime emulator, the AWS
// CLI, tests) reach it with AWS_ENDPOINT_URL_KMS=http://ADDR.
//
//	kms-standin --addr 127.0.0.1:4599 --region eu-west-2 --account 111122223333
//
// It behaves as AWS KMS does where the stand-in models it, by default:
// RotateKeyOnDemand completes in the background, reads are eventually
// consistent, multi-Region replicas learn new key material ids late, at
// most 25 on-demand rotations per key. The environment shortens or turns
// these off (docs/kms-standin.md):
//
//	KMS_STANDIN_ROTATION_DELAY=1.5s          how long a rotation takes ("0": completes in the call)
//	KMS_STANDIN_STALE_READ_WINDOW=750ms      how long reads show the state before a change ("0": never)
//	KMS_STANDIN_REPLICA_SYNC_DELAY=1s        how long shared properties take to reach replicas ("0": at once)
//	KMS_STANDIN_MAX_ON_DEMAND_ROTATIONS=25   on-demand rotations per key (-1: no limit)
//	KMS_STANDIN_REPLICA_REGIONS=eu-west-1=127.0.0.1:4600,eu-west-3=127.0.0.1:4601
//	                                         further Regions to serve (the same stand-in, one address
//	                                         each), so that ReplicateKey into them makes real replicas
//
// --replica-regions sets the last one too (the flag wins). GET
// /_standin/requests lists the requests received (never secrets); GET
// /_standin/health shows the effective settings.
package main

import (
	"errors"
	"flag"
	"fmt"
	"log"
	"net"
	"net/http"
	"os"
	"time"

	"github.com/kms-reimport/kms-reimport/tests/support/kmsstandin"
)

func main() {
	addr := flag.String("addr", "127.0.0.1:4599", "address to listen on")
	region := flag.String("region", "eu-west-2", "Region to put in ARNs")
	account := flag.String("account", "111122223333", "account id to put in ARNs")
	replicas := flag.String("replica-regions", os.Getenv(kmsstandin.EnvReplicaRegions), "further Regions to serve, region=host:port,... (default $"+kmsstandin.EnvReplicaRegions+")")
	flag.Parse()
	if flag.NArg() != 0 {
		fmt.Fprintf(os.Stderr, "kms-standin: unexpected arguments %q\n", flag.Args())
		os.Exit(2)
	}
	o, err := kmsstandin.EnvOptions(kmsstandin.Options{Region: *region, Account: *account}, os.Getenv)
	if err != nil {
		fmt.Fprintf(os.Stderr, "kms-standin: %v\n", err)
		os.Exit(2)
	}
	more, err := kmsstandin.ParseReplicaRegions(*replicas)
	if err != nil {
		fmt.Fprintf(os.Stderr, "kms-standin: %v\n", err)
		os.Exit(2)
	}
	s := kmsstandin.New(o)
	s.Prewarm()
	listeners := []struct {
		srv  *kmsstandin.Server
		addr string
	}{{s, *addr}}
	for _, r := range more {
		if r.Region == *region {
			fmt.Fprintf(os.Stderr, "kms-standin: replica Region %s is the primary Region\n", r.Region)
			os.Exit(2)
		}
		listeners = append(listeners, struct {
			srv  *kmsstandin.Server
			addr string
		}{s.InRegion(r.Region), r.Addr})
	}
	log.Printf("kms-standin: behaviour: %s", s.Behaviour())
	errs := make(chan error, len(listeners))
	for _, l := range listeners {
		ln, err := net.Listen("tcp", l.addr)
		if err != nil {
			log.Fatalf("kms-standin: %v", err)
		}
		log.Printf("kms-standin: KMS stand-in (not AWS KMS) for %s/%s on http://%s", *account, l.srv.Region(), ln.Addr())
		srv := &http.Server{Handler: l.srv, ReadHeaderTimeout: 10 * time.Second}
		go func() { errs <- srv.Serve(ln) }()
	}
	if err := <-errs; err != nil && !errors.Is(err, http.ErrServerClosed) {
		log.Fatalf("kms-standin: %v", err)
	}
}
