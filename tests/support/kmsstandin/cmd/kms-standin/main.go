// Command kms-standin serves the KMS stand-in (package kmsstandin) over
// HTTP so that processes (the Lambdas under the runtime emulator, the AWS
// CLI, tests) reach it with AWS_ENDPOINT_URL_KMS=http://ADDR.
//
//	kms-standin --addr 127.0.0.1:4599 --region eu-west-2 --account 111122223333
//
// GET /_standin/requests lists the requests received (never secrets).
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
	flag.Parse()
	if flag.NArg() != 0 {
		fmt.Fprintf(os.Stderr, "kms-standin: unexpected arguments %q\n", flag.Args())
		os.Exit(2)
	}
	s := kmsstandin.New(kmsstandin.Options{Region: *region, Account: *account})
	s.Prewarm()
	l, err := net.Listen("tcp", *addr)
	if err != nil {
		log.Fatalf("kms-standin: %v", err)
	}
	log.Printf("kms-standin: KMS stand-in (not AWS KMS) for %s/%s on http://%s", *account, *region, l.Addr())
	srv := &http.Server{Handler: s, ReadHeaderTimeout: 10 * time.Second}
	if err := srv.Serve(l); err != nil && !errors.Is(err, http.ErrServerClosed) {
		log.Fatalf("kms-standin: %v", err)
	}
}
