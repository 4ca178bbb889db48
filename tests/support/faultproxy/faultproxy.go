// Package faultproxy is test support: a reverse proxy placed between the
// functions and an emulator, that injects the faults AWS services really
// produce: KMS's ThrottlingException (AWS JSON protocol, HTTP 400) for a
// share of calls or past a request rate (a token bucket, as a request
// quota), or an outage during which connections are refused. It counts
// what passes per operation (X-Amz-Target), and for DynamoDB the capacity
// units each request consumed (ratelimit.go, counts.go).
package faultproxy

import (
	"bytes"
	"context"
	"io"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
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
	// BeforeForward, when set, runs before a request is passed on to the
	// target (a request held in the network, or a caller's retry that
	// lands late): the request reaches the target when it returns.
	BeforeForward func(op string, body []byte)
	// Answered, when set, sees each answer's body as the target sent it
	// (a test learning the import tokens KMS handed out).
	Answered func(op string, answer []byte)

	// UpstreamErrors counts requests the target did not answer (it was
	// down): the proxy answers 502 as a load balancer would.
	UpstreamErrors atomic.Int64

	Requests  atomic.Int64
	Throttled atomic.Int64
	Dropped   atomic.Int64
	seen      atomic.Int64

	limit  *limiter // RateLimit
	counts counts   // per operation (Counts)
	// ConsumedCapacity asks DynamoDB for ReturnConsumedCapacity TOTAL on
	// every data request and adds up what it answers (Capacity).
	ConsumedCapacity atomic.Bool
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
		if op, ok := resp.Request.Context().Value(capacityKey{}).(string); ok {
			p.readCapacity(op, resp)
		}
		if f := p.Answered; f != nil && resp.Body != nil {
			b, err := io.ReadAll(resp.Body)
			resp.Body.Close()
			resp.Body = io.NopCloser(bytes.NewReader(b))
			if err == nil {
				f(resp.Request.Header.Get("X-Amz-Target"), b)
			}
		}
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
			p.throttle(w, op, "Rate exceeded")
			return
		}
	}
	if l := p.limiter(); l != nil && l.applies(op) && !l.take(time.Now()) {
		p.throttle(w, op, "You have exceeded the rate at which you may call KMS. Reduce the frequency of your calls.")
		return
	}
	p.counts.forwarded(op, time.Now())
	capacity := p.ConsumedCapacity.Load() && isDynamoDBData(op)
	before := p.BeforeForward
	if (p.AfterForward != nil || before != nil || capacity) && r.Body != nil {
		b, _ := io.ReadAll(r.Body)
		if capacity {
			b = withConsumedCapacity(b)
			r.ContentLength = int64(len(b))
			r.Header.Set("Content-Length", strconv.Itoa(len(b)))
		}
		r.Body = io.NopCloser(bytes.NewReader(b))
		r = r.WithContext(context.WithValue(r.Context(), bodyKey{}, b))
	}
	if capacity {
		r = r.WithContext(context.WithValue(r.Context(), capacityKey{}, op))
	}
	if before != nil {
		body, _ := r.Context().Value(bodyKey{}).([]byte)
		before(op, body)
	}
	rp.ServeHTTP(w, r)
}

// throttle answers as KMS does when a request quota is exceeded (AWS JSON
// 1.1, HTTP 400, __type ThrottlingException): the SDK maps it to a
// retryable throttling error.
func (p *Proxy) throttle(w http.ResponseWriter, op, msg string) {
	p.Throttled.Add(1)
	p.counts.throttled(op)
	w.Header().Set("Content-Type", "application/x-amz-json-1.1")
	w.Header().Set("X-Amzn-Requestid", "fault-proxy")
	w.WriteHeader(http.StatusBadRequest)
	_, _ = w.Write([]byte(`{"__type":"ThrottlingException","message":"` + msg + `"}`))
}

type bodyKey struct{}
