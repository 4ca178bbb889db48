// Package faultproxy is test support: a reverse proxy placed between the
// functions and an emulator, that injects the faults AWS services really
// produce: KMS's ThrottlingException (AWS JSON protocol, HTTP 400) for a
// share of calls, or an outage during which connections are refused.
package faultproxy

import (
	"bytes"
	"context"
	"io"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
)

// Proxy forwards to Target unless a fault applies.
type Proxy struct {
	URL string

	mu     sync.Mutex
	target *url.URL
	rp     *httputil.ReverseProxy
	srv    *http.Server
	ln     net.Listener

	// ThrottleEvery answers every Nth matching request with a throttling
	// error instead of forwarding it (0: never).
	ThrottleEvery atomic.Int64
	// ThrottleOps limits throttling to these X-Amz-Target operations
	// (suffixes such as "ImportKeyMaterial"); empty: every operation.
	throttleOps []string
	// Down makes the proxy drop every request's connection (an outage).
	Down atomic.Bool

	// AfterForward, when set, runs once an operation's answer came back
	// from the target and before it is passed on (a crash right after a
	// call succeeded).
	AfterForward func(op string, body []byte)

	// UpstreamErrors counts requests the target did not answer (it was
	// down): the proxy answers 502 as a load balancer would.
	UpstreamErrors atomic.Int64

	Requests  atomic.Int64
	Throttled atomic.Int64
	Dropped   atomic.Int64
	seen      atomic.Int64
}

// Start listens on a free loopback port, forwarding to target.
func Start(target string) (*Proxy, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	p := &Proxy{URL: "http://" + ln.Addr().String(), ln: ln}
	if err := p.SetTarget(target); err != nil {
		ln.Close()
		return nil, err
	}
	p.srv = &http.Server{Handler: p}
	go func() { _ = p.srv.Serve(ln) }()
	return p, nil
}

// SetTarget points the proxy somewhere else (an emulator started later).
func (p *Proxy) SetTarget(target string) error {
	u, err := url.Parse(target)
	if err != nil {
		return err
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.target = u
	p.rp = httputil.NewSingleHostReverseProxy(u)
	p.rp.ErrorHandler = func(w http.ResponseWriter, r *http.Request, err error) {
		p.UpstreamErrors.Add(1)
		w.WriteHeader(http.StatusBadGateway)
	}
	p.rp.ModifyResponse = func(resp *http.Response) error {
		if f := p.AfterForward; f != nil {
			body, _ := resp.Request.Context().Value(bodyKey{}).([]byte)
			f(resp.Request.Header.Get("X-Amz-Target"), body)
		}
		return nil
	}
	return nil
}

// ThrottleOnly restricts throttling to these operations.
func (p *Proxy) ThrottleOnly(ops ...string) {
	p.mu.Lock()
	p.throttleOps = ops
	p.mu.Unlock()
}

// Close stops the proxy.
func (p *Proxy) Close() { _ = p.srv.Close() }

func (p *Proxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	p.Requests.Add(1)
	if p.Down.Load() {
		p.Dropped.Add(1)
		// An outage: the connection closes with no answer.
		if hj, ok := w.(http.Hijacker); ok {
			if c, _, err := hj.Hijack(); err == nil {
				c.Close()
				return
			}
		}
		w.WriteHeader(http.StatusServiceUnavailable)
		return
	}
	p.mu.Lock()
	rp, ops := p.rp, p.throttleOps
	p.mu.Unlock()
	op := r.Header.Get("X-Amz-Target")
	match := len(ops) == 0
	for _, o := range ops {
		match = match || strings.HasSuffix(op, "."+o)
	}
	if n := p.ThrottleEvery.Load(); n > 0 && match && op != "" {
		if p.seen.Add(1)%n == 0 {
			p.Throttled.Add(1)
			// As KMS answers (AWS JSON 1.1): the SDK maps it to a
			// retryable ThrottlingException.
			w.Header().Set("Content-Type", "application/x-amz-json-1.1")
			w.Header().Set("X-Amzn-Requestid", "fault-proxy")
			w.WriteHeader(http.StatusBadRequest)
			_, _ = w.Write([]byte(`{"__type":"ThrottlingException","message":"Rate exceeded"}`))
			return
		}
	}
	if p.AfterForward != nil && r.Body != nil {
		b, _ := io.ReadAll(r.Body)
		r.Body = io.NopCloser(bytes.NewReader(b))
		r = r.WithContext(context.WithValue(r.Context(), bodyKey{}, b))
	}
	rp.ServeHTTP(w, r)
}

type bodyKey struct{}
