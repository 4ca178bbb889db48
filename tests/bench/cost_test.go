package bench

// The estimated AWS cost of what a run used, at the prices of
// docs/pricing.md (us-east-1, free tiers ignored). The prices are mirrored
// here; TestPricesMatchDocs keeps the two equal.

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"testing"
)

// Unit prices in US dollars, us-east-1 (docs/pricing.md, "Unit prices").
var prices = map[string]float64{
	"lambda-gb-second":        0.0000133334, // Lambda arm64 duration
	"lambda-request":          0.20 / 1e6,
	"sfn-standard-transition": 0.025 / 1000,
	"sfn-express-request":     1.00 / 1e6,
	"sfn-express-gb-second":   0.00001667,
	"ddb-write-unit":          0.625 / 1e6,
	"ddb-read-unit":           0.125 / 1e6,
	"kms-request":             0.03 / 10000,
	"sm-api-call":             0.05 / 10000,
}

// priceRows says where each price is in docs/pricing.md: the row's Service
// and Unit cells, and which "$X per N" of its price cell.
var priceRows = map[string]struct {
	service, unit string
	nth           int
}{
	"lambda-gb-second":        {"Lambda (arm64)", "duration", 0},
	"lambda-request":          {"Lambda", "requests", 0},
	"sfn-standard-transition": {"Step Functions, Standard", "state transition", 0},
	"sfn-express-request":     {"Step Functions, Express (for comparison; not used)", "requests; duration", 0},
	"sfn-express-gb-second":   {"Step Functions, Express (for comparison; not used)", "requests; duration", 1},
	"ddb-write-unit":          {"DynamoDB on-demand", "write request unit", 0},
	"ddb-read-unit":           {"DynamoDB on-demand", "read request unit", 0},
	"kms-request":             {"KMS", "requests", 0},
	"sm-api-call":             {"Secrets Manager", "API calls", 0},
}

var perRe = regexp.MustCompile(`\$([0-9]+(?:\.[0-9]+)?) per (1M|million|[0-9][0-9,]*)?`)

// docPrices reads the unit prices from docs/pricing.md.
func docPrices(root string) (map[string]float64, error) {
	b, err := os.ReadFile(filepath.Join(root, "docs", "pricing.md"))
	if err != nil {
		return nil, err
	}
	out := map[string]float64{}
	for _, line := range strings.Split(string(b), "\n") {
		cells := strings.Split(line, "|")
		if len(cells) < 5 {
			continue
		}
		svc, unit, price := strings.TrimSpace(cells[1]), strings.TrimSpace(cells[2]), cells[3]
		for name, r := range priceRows {
			if r.service != svc || r.unit != unit {
				continue
			}
			ms := perRe.FindAllStringSubmatch(price, -1)
			if len(ms) <= r.nth {
				return nil, fmt.Errorf("docs/pricing.md row %q/%q: no price %d in %q", svc, unit, r.nth, price)
			}
			m := ms[r.nth]
			v, _ := strconv.ParseFloat(m[1], 64)
			per := 1.0
			switch m[2] {
			case "":
			case "1M", "million":
				per = 1e6
			default:
				per, _ = strconv.ParseFloat(strings.ReplaceAll(m[2], ",", ""), 64)
			}
			out[name] = v / per
		}
	}
	return out, nil
}

// TestPricesMatchDocs: the prices the benchmark uses are those of
// docs/pricing.md.
func TestPricesMatchDocs(t *testing.T) {
	doc, err := docPrices(root)
	if err != nil {
		t.Fatal(err)
	}
	for name, want := range prices {
		got, ok := doc[name]
		if !ok {
			t.Errorf("%s: no row %q/%q in docs/pricing.md", name, priceRows[name].service, priceRows[name].unit)
			continue
		}
		if d := got/want - 1; d > 1e-9 || d < -1e-9 {
			t.Errorf("%s: docs/pricing.md says %.12g, tests/bench uses %.12g", name, got, want)
		}
	}
}

// costTerm is one line of a cost estimate.
type costTerm struct {
	name  string
	count float64
	unit  string
	price float64
}

func (c costTerm) cost() float64 { return c.count * c.price }

// costOf is the estimated cost of u, term by term.
func costOf(u *usage) []costTerm {
	r, w := u.ddbUnits()
	return []costTerm{
		{"Step Functions (Standard) state transitions", float64(u.Transitions), "transitions", prices["sfn-standard-transition"]},
		{"Lambda duration", u.gbSeconds(), "GB-s", prices["lambda-gb-second"]},
		{"Lambda requests", float64(u.invocations()), "requests", prices["lambda-request"]},
		{"KMS requests", float64(u.kmsCalls()), "requests", prices["kms-request"]},
		{"Secrets Manager API calls", float64(u.smCalls()), "calls", prices["sm-api-call"]},
		{"DynamoDB write request units", w, "WRU", prices["ddb-write-unit"]},
		{"DynamoDB read request units", r, "RRU", prices["ddb-read-unit"]},
	}
}

// costReport prints the cost of u scaled to per renewals (e.g. 1,000
// renewals), term by term, largest first, and returns the total.
func costReport(u *usage, per int) (string, float64) {
	terms := costOf(u)
	sort.Slice(terms, func(i, j int) bool { return terms[i].cost() > terms[j].cost() })
	k := float64(per) / float64(max(u.Renewals, 1))
	total := 0.0
	for _, t := range terms {
		total += t.cost() * k
	}
	var b strings.Builder
	fmt.Fprintf(&b, "  estimated AWS cost of %d renewals (docs/pricing.md, us-east-1, no free tier): $%.4f\n", per, total)
	for _, t := range terms {
		fmt.Fprintf(&b, "    %-44s %10.1f %-11s $%.5f (%4.1f%%)\n", t.name, t.count*k, t.unit, t.cost()*k, 100*t.cost()*k/total)
	}
	fmt.Fprintf(&b, "  dominant term: %s\n", terms[0].name)
	return b.String(), total
}
