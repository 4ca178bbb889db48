package faultproxy

import (
	"strings"
	"sync"
	"time"
)

// limiter is a token bucket shared by a set of operations, as an AWS
// request quota is: Rate tokens a second, at most Burst banked; a request
// that finds no token is throttled and takes none (KMS: "throttles all
// subsequent requests in that second").
type limiter struct {
	mu     sync.Mutex
	rate   float64
	burst  float64
	tokens float64
	last   time.Time
	ops    []string
}

// RateLimit throttles the given operations (X-Amz-Target suffixes such as
// "GetParametersForImport"; none: every operation) together at rate
// requests per second, with a bucket of burst tokens (at least 1), full at
// the start. rate <= 0 removes the limit.
func (p *Proxy) RateLimit(rate, burst float64, ops ...string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if rate <= 0 {
		p.limit = nil
		return
	}
	burst = max(burst, 1)
	p.limit = &limiter{rate: rate, burst: burst, tokens: burst, last: time.Now(), ops: ops}
}

func (p *Proxy) limiter() *limiter {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.limit
}

func (l *limiter) applies(op string) bool {
	if op == "" {
		return false
	}
	if len(l.ops) == 0 {
		return true
	}
	for _, o := range l.ops {
		if strings.HasSuffix(op, "."+o) {
			return true
		}
	}
	return false
}

// take spends a token if there is one at now.
func (l *limiter) take(now time.Time) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if dt := now.Sub(l.last).Seconds(); dt > 0 {
		l.tokens = min(l.burst, l.tokens+dt*l.rate)
		l.last = now
	}
	if l.tokens < 1 {
		return false
	}
	l.tokens--
	return true
}
