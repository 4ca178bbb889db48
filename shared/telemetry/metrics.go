// Emit writes CloudWatch metrics in the embedded metric format
// (EMF): one JSON line on stdout, which Lambda ships to CloudWatch Logs and
// CloudWatch turns into metrics, with no API call and no extra permission.

package telemetry

import (
	"encoding/json"
	"io"
	"os"
	"sort"
	"sync"
	"time"
)

// Namespace of every metric of this product.
const Namespace = "KmsReimport"

// Units used here.
const (
	Count = "Count"
	None  = "None"
)

// Metric is one value.
type Metric struct {
	Name  string
	Value float64
	Unit  string
}

var (
	mu  sync.Mutex
	out io.Writer = os.Stdout
)

// SetOutput redirects the lines (tests).
func SetOutput(w io.Writer) {
	mu.Lock()
	out = w
	mu.Unlock()
}

// Emit writes one EMF document with the given dimensions (for example
// {"Service": "kms-reimport"}) and metrics.
func Emit(dims map[string]string, ms ...Metric) {
	doc := map[string]any{}
	dimNames := make([]string, 0, len(dims))
	for k, v := range dims {
		dimNames = append(dimNames, k)
		doc[k] = v
	}
	sort.Strings(dimNames)
	defs := make([]map[string]string, 0, len(ms))
	for _, m := range ms {
		defs = append(defs, map[string]string{"Name": m.Name, "Unit": m.Unit})
		doc[m.Name] = m.Value
	}
	doc["_aws"] = map[string]any{
		"Timestamp": time.Now().UnixMilli(),
		"CloudWatchMetrics": []any{map[string]any{
			"Namespace":  Namespace,
			"Dimensions": [][]string{dimNames},
			"Metrics":    defs,
		}},
	}
	b, err := json.Marshal(doc)
	if err != nil {
		return
	}
	mu.Lock()
	defer mu.Unlock()
	_, _ = out.Write(append(b, '\n'))
}

// Service is the dimension every metric carries.
var Service = map[string]string{"Service": "kms-reimport"}
