package faultproxy

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"sort"
	"strings"
	"sync"
	"time"
)

// OpCount is what the proxy saw of one operation.
type OpCount struct {
	// Forwarded requests reached the target (whatever it answered).
	Forwarded int64
	// Throttled requests were answered ThrottlingException by the proxy.
	Throttled int64
	// First and Last forwarded request.
	First, Last time.Time
	// ReadUnits and WriteUnits are the capacity units DynamoDB reported
	// (ConsumedCapacity) for this operation's requests.
	ReadUnits, WriteUnits float64
}

type counts struct {
	mu sync.Mutex
	m  map[string]*OpCount
}

func (c *counts) get(op string) *OpCount {
	if c.m == nil {
		c.m = map[string]*OpCount{}
	}
	oc := c.m[op]
	if oc == nil {
		oc = &OpCount{}
		c.m[op] = oc
	}
	return oc
}

func (c *counts) forwarded(op string, at time.Time) {
	if op == "" {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	oc := c.get(opName(op))
	oc.Forwarded++
	if oc.First.IsZero() {
		oc.First = at
	}
	oc.Last = at
}

func (c *counts) throttled(op string) {
	if op == "" {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.get(opName(op)).Throttled++
}

// opName is an X-Amz-Target without its service prefix
// ("TrentService.GetParametersForImport" -> "GetParametersForImport").
func opName(target string) string {
	if i := strings.LastIndexByte(target, '.'); i >= 0 {
		return target[i+1:]
	}
	return target
}

// Counts returns a copy of the counts per operation since the last Reset.
func (p *Proxy) Counts() map[string]OpCount {
	p.counts.mu.Lock()
	defer p.counts.mu.Unlock()
	out := make(map[string]OpCount, len(p.counts.m))
	for k, v := range p.counts.m {
		out[k] = *v
	}
	return out
}

// ResetCounts forgets the counts per operation.
func (p *Proxy) ResetCounts() {
	p.counts.mu.Lock()
	p.counts.m = nil
	p.counts.mu.Unlock()
}

// Ops lists operations in a stable order.
func Ops(m map[string]OpCount) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// DynamoDB data operations, whose requests take ReturnConsumedCapacity.
var dynamoDBData = map[string]bool{
	"GetItem": true, "PutItem": true, "UpdateItem": true, "DeleteItem": true, "Query": true, "Scan": true,
	"BatchGetItem": true, "BatchWriteItem": true, "TransactGetItems": true, "TransactWriteItems": true,
}

func isDynamoDBData(target string) bool {
	return strings.HasPrefix(target, "DynamoDB_") && dynamoDBData[opName(target)]
}

// withConsumedCapacity adds "ReturnConsumedCapacity": "TOTAL" to a JSON
// request body (DynamoDB Local does not check the signature over it).
func withConsumedCapacity(b []byte) []byte {
	var m map[string]json.RawMessage
	if json.Unmarshal(b, &m) != nil {
		return b
	}
	m["ReturnConsumedCapacity"] = json.RawMessage(`"TOTAL"`)
	out, err := json.Marshal(m)
	if err != nil {
		return b
	}
	return out
}

type capacityKey struct{}

// capacity is DynamoDB's ConsumedCapacity (one object, or a list for the
// batch and transaction operations).
type capacity struct {
	CapacityUnits      float64
	ReadCapacityUnits  float64
	WriteCapacityUnits float64
}

// readCapacity reads the ConsumedCapacity of a DynamoDB answer (the body
// is put back for the client). DynamoDB Local reports CapacityUnits only:
// reads are units of the read operations, writes of the write ones.
func (p *Proxy) readCapacity(target string, resp *http.Response) {
	b, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	resp.Body = io.NopCloser(bytes.NewReader(b))
	if err != nil {
		return
	}
	var doc struct {
		ConsumedCapacity json.RawMessage
	}
	if json.Unmarshal(b, &doc) != nil || len(doc.ConsumedCapacity) == 0 {
		return
	}
	var list []capacity
	if doc.ConsumedCapacity[0] == '[' {
		_ = json.Unmarshal(doc.ConsumedCapacity, &list)
	} else {
		var one capacity
		if json.Unmarshal(doc.ConsumedCapacity, &one) == nil {
			list = []capacity{one}
		}
	}
	op := opName(target)
	write := strings.Contains(op, "Put") || strings.Contains(op, "Update") || strings.Contains(op, "Delete") || strings.Contains(op, "Write")
	p.counts.mu.Lock()
	defer p.counts.mu.Unlock()
	oc := p.counts.get(op)
	for _, c := range list {
		r, w := c.ReadCapacityUnits, c.WriteCapacityUnits
		if r == 0 && w == 0 {
			if write {
				w = c.CapacityUnits
			} else {
				r = c.CapacityUnits
			}
		}
		oc.ReadUnits += r
		oc.WriteUnits += w
	}
}
