package iamgate

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"html"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"regexp"
	"strings"
	"time"
)

// Config is the gate's configuration file (the local stack writes it).
type Config struct {
	// Evaluator is the URL of the evaluator's /decide endpoint.
	Evaluator string `json:"evaluator"`
	Partition string `json:"partition"`
	Region    string `json:"region"`
	Account   string `json:"account"`
	// HashKey is the table's partition key attribute.
	HashKey string `json:"hashKey"`
	// KMS maps a Region to its KMS emulator; the others are one endpoint.
	KMS            map[string]string `json:"kms"`
	DynamoDB       string            `json:"dynamodb"`
	SecretsManager string            `json:"secretsmanager"`
	SNS            string            `json:"sns"`
	Functions      []Function        `json:"functions"`
}

// Function is one function behind the gate: its own port, its role.
type Function struct {
	Name     string            `json:"name"`
	Addr     string            `json:"addr"` // host:port it is served on
	RoleARN  string            `json:"roleArn"`
	Session  string            `json:"session"`
	Policies []json.RawMessage `json:"policies"` // [{name, policy}]
}

// Decision is what the evaluator answers.
type Decision struct {
	Decision string          `json:"decision"`
	Ignored  []string        `json:"ignoredContextKeys"`
	Errors   json.RawMessage `json:"errors,omitempty"`
}

// Gate serves every function of the config.
type Gate struct {
	cfg    Config
	client *http.Client
	log    *slog.Logger
}

// New makes a gate.
func New(cfg Config, log *slog.Logger) *Gate {
	return &Gate{cfg: cfg, client: &http.Client{Timeout: 30 * time.Second}, log: log}
}

// Serve listens on every function's address until ctx ends.
func (g *Gate) Serve(ctx context.Context) error {
	errc := make(chan error, len(g.cfg.Functions))
	for _, f := range g.cfg.Functions {
		ln, err := net.Listen("tcp", f.Addr)
		if err != nil {
			return fmt.Errorf("function %s: %w", f.Name, err)
		}
		srv := &http.Server{Handler: g.handler(f), ReadHeaderTimeout: 10 * time.Second}
		go func() { errc <- srv.Serve(ln) }()
		go func() { <-ctx.Done(); _ = srv.Close() }()
	}
	select {
	case <-ctx.Done():
		return nil
	case err := <-errc:
		return err
	}
}

var credRegion = regexp.MustCompile(`Credential=[^/]+/[0-9]+/([a-z0-9-]+)/`)

// handler decides each request of one function and forwards the allowed.
func (g *Gate) handler(f Function) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(r.Body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		region := g.cfg.Region
		if m := credRegion.FindStringSubmatch(r.Header.Get("Authorization")); m != nil {
			region = m[1]
		}
		svc, op, err := Identify(r.Header.Get("X-Amz-Target"), r.Header.Get("Content-Type"), body)
		if err != nil {
			g.fail(w, f, err)
			return
		}
		call, err := Parse(svc, op, body, g.cfg.HashKey)
		if err != nil {
			g.fail(w, f, err)
			return
		}
		upstream := g.upstream(svc, region)
		if upstream == "" {
			g.fail(w, f, fmt.Errorf("no %s emulator for Region %s", svc, region))
			return
		}
		req, err := g.request(r.Context(), call, upstream, region, r.Header)
		if err != nil {
			g.fail(w, f, err)
			return
		}
		d, err := g.decide(r.Context(), f, req)
		if err != nil {
			g.fail(w, f, err)
			return
		}
		g.log.Info("decision", "function", f.Name, "action", req.Action, "resource", req.Resource, "decision", d.Decision, "context", req.Context, "ignored", d.Ignored)
		if d.Decision != "Allowed" {
			deny(w, svc, f.Session, req.Action, req.Resource)
			return
		}
		u, _ := url.Parse(upstream)
		r.Body = io.NopCloser(bytes.NewReader(body))
		r.ContentLength = int64(len(body))
		httputil.NewSingleHostReverseProxy(u).ServeHTTP(w, r)
	})
}

func (g *Gate) upstream(svc Service, region string) string {
	switch svc {
	case KMS:
		return g.cfg.KMS[region]
	case DynamoDB:
		return g.cfg.DynamoDB
	case SecretsManager:
		return g.cfg.SecretsManager
	case SNS:
		return g.cfg.SNS
	}
	return ""
}

// fail answers a request the gate could not decide: loudly, never allowed.
func (g *Gate) fail(w http.ResponseWriter, f Function, err error) {
	g.log.Error("undecided", "function", f.Name, "error", err.Error())
	w.Header().Set("Content-Type", "application/x-amz-json-1.1")
	w.WriteHeader(http.StatusInternalServerError)
	_ = json.NewEncoder(w).Encode(map[string]string{"__type": "InternalFailure", "message": "local IAM gate: " + err.Error()})
}

// Request is what the evaluator decides.
type Request struct {
	Principal      string              `json:"principal"`
	Action         string              `json:"action"`
	Resource       string              `json:"resource"`
	Account        string              `json:"account"`
	Context        map[string][]string `json:"context"`
	Policies       []json.RawMessage   `json:"policies"`
	ResourcePolicy any                 `json:"resourcePolicy,omitempty"`
}

func (g *Gate) decide(ctx context.Context, f Function, req Request) (Decision, error) {
	req.Principal, req.Policies = f.Session, f.Policies
	b, _ := json.Marshal(req)
	hr, err := http.NewRequestWithContext(ctx, http.MethodPost, g.cfg.Evaluator, bytes.NewReader(b))
	if err != nil {
		return Decision{}, err
	}
	resp, err := g.client.Do(hr)
	if err != nil {
		return Decision{}, fmt.Errorf("evaluator: %w", err)
	}
	defer resp.Body.Close()
	var d Decision
	if err := json.NewDecoder(resp.Body).Decode(&d); err != nil {
		return d, fmt.Errorf("evaluator answer: %w", err)
	}
	if d.Decision == "Error" || d.Decision == "" {
		return d, fmt.Errorf("evaluator could not decide %s on %s: %s", req.Action, req.Resource, d.Errors)
	}
	return d, nil
}

// deny answers as the service does when IAM denies (the message names the
// caller, the action and the resource).
func deny(w http.ResponseWriter, svc Service, session, action, resource string) {
	msg := fmt.Sprintf("User: %s is not authorized to perform: %s on resource: %s because no identity-based policy allows the %s action", session, action, resource, action)
	switch svc {
	case SNS:
		w.Header().Set("Content-Type", "text/xml")
		w.WriteHeader(http.StatusForbidden)
		fmt.Fprintf(w, `<ErrorResponse xmlns="http://sns.amazonaws.com/doc/2010-03-31/"><Error><Type>Sender</Type><Code>AuthorizationError</Code><Message>%s</Message></Error><RequestId>local-iam-gate</RequestId></ErrorResponse>`, html.EscapeString(msg))
		return
	case DynamoDB:
		w.Header().Set("Content-Type", "application/x-amz-json-1.0")
		w.WriteHeader(http.StatusBadRequest)
		_ = json.NewEncoder(w).Encode(map[string]string{"__type": "com.amazonaws.dynamodb.v20120810#AccessDeniedException", "message": msg})
		return
	}
	w.Header().Set("Content-Type", "application/x-amz-json-1.1")
	w.WriteHeader(http.StatusBadRequest)
	_ = json.NewEncoder(w).Encode(map[string]string{"__type": "AccessDeniedException", "message": msg})
}

// request builds the evaluator's request: the resource ARN and the facts
// of the resource AWS adds to the context.
func (g *Gate) request(ctx context.Context, c Call, upstream, region string, h http.Header) (Request, error) {
	req := Request{Action: c.Action(), Account: g.cfg.Account, Context: c.Context}
	p, acct := g.cfg.Partition, g.cfg.Account
	switch c.Service {
	case DynamoDB:
		req.Resource = fmt.Sprintf("arn:%s:dynamodb:%s:%s:table/%s", p, region, acct, c.Ref)
	case SNS:
		req.Resource = c.Ref
	case SecretsManager:
		req.Resource = fmt.Sprintf("arn:%s:secretsmanager:%s:%s:secret:%s", p, region, acct, c.Ref)
		var out struct {
			ARN  string
			Tags []struct{ Key, Value string }
		}
		if err := g.ask(ctx, upstream, "secretsmanager.DescribeSecret", "application/x-amz-json-1.1", h, map[string]string{"SecretId": c.Ref}, &out); err == nil && out.ARN != "" {
			req.Resource = out.ARN
			for _, t := range out.Tags {
				c.Context["secretsmanager:ResourceTag/"+t.Key] = []string{t.Value}
				c.Context["aws:ResourceTag/"+t.Key] = []string{t.Value}
			}
		}
		c.Context["secretsmanager:SecretId"] = []string{req.Resource}
	case KMS:
		return req, g.kmsFacts(ctx, &req, c, upstream, region, h)
	}
	return req, nil
}

// kmsFacts: the key's ARN, tags, origin, spec, usage and Region
// attributes, from the KMS emulator, and the default key policy (which
// lets IAM policies of the account allow the key's use).
func (g *Gate) kmsFacts(ctx context.Context, req *Request, c Call, upstream, region string, h http.Header) error {
	p, acct := g.cfg.Partition, g.cfg.Account
	req.ResourcePolicy = map[string]any{"Version": "2012-10-17", "Statement": []any{map[string]any{
		"Sid": "Enable IAM User Permissions", "Effect": "Allow", "Principal": map[string]any{"AWS": fmt.Sprintf("arn:%s:iam::%s:root", p, acct)},
		"Action": "kms:*", "Resource": "*"}}}
	req.Resource = fmt.Sprintf("arn:%s:kms:%s:%s:key/%s", p, region, acct, c.Ref)
	if strings.HasPrefix(c.Ref, "arn:") {
		req.Resource = c.Ref
	}
	req.Context["kms:CallerAccount"] = []string{acct}
	if c.Operation == "ListKeys" || c.Operation == "ListAliases" {
		// No resource type (Service Authorization Reference, KMS;
		// docs/aws-behaviour.md row 67): IAM evaluates them against "*".
		req.Resource = "*"
		return nil
	}
	var md struct {
		KeyMetadata struct {
			Arn, Origin, KeySpec, KeyUsage string
			MultiRegion                    bool
		}
	}
	if err := g.ask(ctx, upstream, "TrentService.DescribeKey", "application/x-amz-json-1.1", h, map[string]string{"KeyId": c.Ref}, &md); err != nil || md.KeyMetadata.Arn == "" {
		return nil // no such key: the emulator answers NotFound once allowed
	}
	k := md.KeyMetadata
	req.Resource = k.Arn
	set := func(key, v string) {
		if v != "" {
			req.Context[key] = []string{v}
		}
	}
	set("kms:KeyOrigin", k.Origin)
	set("kms:KeySpec", k.KeySpec)
	set("kms:KeyUsage", k.KeyUsage)
	set("kms:MultiRegion", fmt.Sprint(k.MultiRegion))
	if k.KeySpec == "SYMMETRIC_DEFAULT" && (c.Operation == "Encrypt" || c.Operation == "Decrypt") && len(req.Context["kms:EncryptionAlgorithm"]) == 0 {
		set("kms:EncryptionAlgorithm", "SYMMETRIC_DEFAULT")
	}
	var tags struct {
		Tags []struct{ TagKey, TagValue string }
	}
	if err := g.ask(ctx, upstream, "TrentService.ListResourceTags", "application/x-amz-json-1.1", h, map[string]string{"KeyId": k.Arn}, &tags); err != nil {
		return fmt.Errorf("tags of %s: %w", k.Arn, err)
	}
	for _, t := range tags.Tags {
		req.Context["aws:ResourceTag/"+t.TagKey] = []string{t.TagValue}
	}
	return nil
}

// ask calls an emulator's JSON API (with the caller's Authorization
// header: the emulators don't check signatures, but want one).
func (g *Gate) ask(ctx context.Context, upstream, target, contentType string, h http.Header, in, out any) error {
	b, _ := json.Marshal(in)
	r, err := http.NewRequestWithContext(ctx, http.MethodPost, upstream+"/", bytes.NewReader(b))
	if err != nil {
		return err
	}
	r.Header.Set("X-Amz-Target", target)
	// The KMS stand-in neither logs nor faults these (its GateHeader).
	r.Header.Set("X-Kms-Reimport-Iam-Gate", "facts")
	r.Header.Set("Content-Type", contentType)
	r.Header.Set("Authorization", h.Get("Authorization"))
	r.Header.Set("X-Amz-Date", h.Get("X-Amz-Date"))
	resp, err := g.client.Do(r)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s: HTTP %d: %s", target, resp.StatusCode, data)
	}
	return json.Unmarshal(data, out)
}
