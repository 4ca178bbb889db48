// Package iamgate is the IAM gate of the local stack: a reverse proxy in
// front of the emulators (KMS, DynamoDB, Secrets Manager, SNS) that makes
// every AWS request of a function pass a policy decision, as AWS does. It
// builds the request context AWS builds (action, resource ARN, condition
// keys from the request and from the resource's facts, which it asks the
// emulators for), asks the evaluator (infra/local/iam, the third-party
// @cloud-copilot/iam-simulate) whether the function's role allows it, and
// answers AccessDeniedException the way the service does when not.
//
// A test tool of the local stack only; nothing here is deployed.
package iamgate

import (
	"cmp"
	"encoding/json"
	"fmt"
	"net/url"
	"regexp"
	"sort"
	"strconv"
	"strings"
)

// Service is what a request is for.
type Service string

// The services the gate understands.
const (
	KMS            Service = "kms"
	DynamoDB       Service = "dynamodb"
	SecretsManager Service = "secretsmanager"
	SNS            Service = "sns"
)

// Call is one request as the policy decision sees it, before the
// resource's facts: the action, what names the resource, and the
// condition keys the request itself gives.
type Call struct {
	Service Service
	// Operation is the API name (GetItem, Decrypt, Publish).
	Operation string
	// Ref names the resource as the request does: a KMS key id, alias or
	// ARN; a table name; a secret name or ARN; a topic ARN.
	Ref string
	// Context holds the condition keys the request gives, each a list of
	// values.
	Context map[string][]string
}

// Action is the IAM action, service:Operation.
func (c Call) Action() string { return string(c.Service) + ":" + c.Operation }

// Identify tells the service and operation from the headers and body of a
// request: X-Amz-Target for the JSON protocols, Action= for SNS's query
// protocol.
func Identify(target, contentType string, body []byte) (Service, string, error) {
	prefix, op, ok := strings.Cut(target, ".")
	if ok {
		switch {
		case prefix == "TrentService":
			return KMS, op, nil
		case strings.HasPrefix(prefix, "DynamoDB_"):
			return DynamoDB, op, nil
		case prefix == "secretsmanager":
			return SecretsManager, op, nil
		case strings.HasPrefix(prefix, "AmazonSNS") || strings.HasPrefix(prefix, "AmazonSimpleNotificationService"):
			return SNS, op, nil
		}
		return "", "", fmt.Errorf("X-Amz-Target %q: the IAM gate knows KMS, DynamoDB, Secrets Manager and SNS", target)
	}
	if strings.HasPrefix(contentType, "application/x-www-form-urlencoded") {
		v, err := url.ParseQuery(string(body))
		if err == nil && v.Get("Action") != "" {
			return SNS, v.Get("Action"), nil
		}
	}
	return "", "", fmt.Errorf("request without X-Amz-Target or query Action (content type %q): the IAM gate cannot tell its action", contentType)
}

// Parse builds the Call of a request. hashKey is the table's partition
// key attribute (for dynamodb:LeadingKeys).
func Parse(svc Service, op string, body []byte, hashKey string) (Call, error) {
	c := Call{Service: svc, Operation: op, Context: map[string][]string{}}
	if svc == SNS {
		return parseSNS(c, body)
	}
	var in map[string]any
	if len(body) > 0 {
		if err := json.Unmarshal(body, &in); err != nil {
			return c, fmt.Errorf("%s request body is not JSON: %w", c.Action(), err)
		}
	}
	switch svc {
	case KMS:
		parseKMS(&c, in)
	case DynamoDB:
		if err := parseDynamoDB(&c, in, hashKey); err != nil {
			return c, err
		}
	case SecretsManager:
		c.Ref = str(in["SecretId"])
		c.set("secretsmanager:VersionId", str(in["VersionId"]))
		c.set("secretsmanager:VersionStage", str(in["VersionStage"]))
	}
	return c, nil
}

func (c *Call) set(key, value string) {
	if value != "" {
		c.Context[key] = []string{value}
	}
}

func str(v any) string {
	s, _ := v.(string)
	return s
}

// parseKMS: the key and the condition keys that come from the request
// (the service authorization reference, "Condition keys for AWS KMS").
func parseKMS(c *Call, in map[string]any) {
	c.Ref = str(in["KeyId"])
	c.set("kms:WrappingAlgorithm", str(in["WrappingAlgorithm"]))
	c.set("kms:WrappingKeySpec", str(in["WrappingKeySpec"]))
	// A KMS condition on a request parameter applies to its default
	// value too (KMS developer guide, "AWS KMS condition keys").
	if m := str(in["ExpirationModel"]); m != "" || c.Operation == "ImportKeyMaterial" {
		c.set("kms:ExpirationModel", cmp.Or(m, "KEY_MATERIAL_EXPIRES"))
	}
	if v, ok := in["ValidTo"].(float64); ok {
		c.set("kms:ValidTo", strconv.FormatInt(int64(v), 10))
	}
	c.set("kms:EncryptionAlgorithm", str(in["EncryptionAlgorithm"]))
	c.set("kms:SigningAlgorithm", str(in["SigningAlgorithm"]))
	c.set("kms:MacAlgorithm", str(in["MacAlgorithm"]))
	c.set("kms:MessageType", str(in["MessageType"]))
	c.set("kms:RequestAlias", aliasOf(c.Ref))
	if ec, ok := in["EncryptionContext"].(map[string]any); ok && len(ec) > 0 {
		var keys []string
		for k, v := range ec {
			keys = append(keys, k)
			c.set("kms:EncryptionContext:"+k, str(v))
		}
		sort.Strings(keys)
		c.Context["kms:EncryptionContextKeys"] = keys
	}
}

func aliasOf(ref string) string {
	if strings.HasPrefix(ref, "alias/") {
		return ref
	}
	if _, a, ok := strings.Cut(ref, ":alias/"); ok {
		return "alias/" + a
	}
	return ""
}

var (
	keyEq = regexp.MustCompile(`^\s*\(?\s*(#?[A-Za-z0-9_]+)\s*=\s*(:[A-Za-z0-9_]+)\s*\)?\s*$`)
)

// parseDynamoDB: the table, dynamodb:LeadingKeys (the partition key
// values the request touches), dynamodb:Attributes (the top-level
// attributes it names), and dynamodb:Select/dynamodb:ReturnValues only
// when the request sends them.
func parseDynamoDB(c *Call, in map[string]any, hashKey string) error {
	c.Ref = str(in["TableName"])
	c.set("dynamodb:Select", str(in["Select"]))
	c.set("dynamodb:ReturnValues", str(in["ReturnValues"]))
	names, _ := in["ExpressionAttributeNames"].(map[string]any)
	resolve := func(n string) string {
		if strings.HasPrefix(n, "#") {
			return str(names[n])
		}
		return n
	}
	var attrs []string
	if p := str(in["ProjectionExpression"]); p != "" {
		for _, part := range strings.Split(p, ",") {
			top := strings.TrimSpace(part)
			top = strings.SplitN(strings.SplitN(top, ".", 2)[0], "[", 2)[0]
			attrs = append(attrs, resolve(top))
		}
	}
	if list, ok := in["AttributesToGet"].([]any); ok {
		for _, a := range list {
			attrs = append(attrs, str(a))
		}
	}
	var leading string
	switch c.Operation {
	case "GetItem", "UpdateItem", "DeleteItem":
		leading = attrString(in["Key"], hashKey)
	case "PutItem":
		item, _ := in["Item"].(map[string]any)
		leading = attrString(item, hashKey)
		for k := range item {
			attrs = append(attrs, k)
		}
	case "Query":
		values, _ := in["ExpressionAttributeValues"].(map[string]any)
		for _, cond := range regexp.MustCompile(`(?i)\s+AND\s+`).Split(str(in["KeyConditionExpression"]), -1) {
			if m := keyEq.FindStringSubmatch(cond); m != nil && resolve(m[1]) == hashKey {
				leading = attrString(map[string]any{"v": values[m[2]]}, "v")
			}
		}
	}
	c.set("dynamodb:LeadingKeys", leading)
	if len(attrs) > 0 {
		sort.Strings(attrs)
		c.Context["dynamodb:Attributes"] = dedupe(attrs)
	}
	return nil
}

// attrString is the string or number value of attribute name of an item
// in DynamoDB's JSON ({"S": "..."}).
func attrString(item any, name string) string {
	m, _ := item.(map[string]any)
	v, _ := m[name].(map[string]any)
	if s := str(v["S"]); s != "" {
		return s
	}
	return str(v["N"])
}

func dedupe(s []string) []string {
	var out []string
	for i, x := range s {
		if i == 0 || x != s[i-1] {
			out = append(out, x)
		}
	}
	return out
}

func parseSNS(c Call, body []byte) (Call, error) {
	if json.Valid(body) && len(body) > 0 {
		var in map[string]any
		_ = json.Unmarshal(body, &in)
		c.Ref = str(in["TopicArn"])
		return c, nil
	}
	v, err := url.ParseQuery(string(body))
	if err != nil {
		return c, fmt.Errorf("SNS request body: %w", err)
	}
	c.Ref = v.Get("TopicArn")
	return c, nil
}
