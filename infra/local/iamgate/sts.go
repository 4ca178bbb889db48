package iamgate

// Many accounts (docs/deploy.md, "Many accounts"): the gate answers
// sts:AssumeRole as STS does, deciding it with the caller's identity
// policies AND the member role's trust policy (a cross-account request
// needs both), and remembers the credentials moto's STS issues, so that a
// later request signed with them is decided against the member role's
// policies, as that role's session, and reaches the member account's KMS.

import (
	"bytes"
	"encoding/json"
	"fmt"
	"html"
	"io"
	"net/http"
	"net/url"
	"regexp"
	"strings"
)

// Member is a member account with its member role (infra/member's
// template resolved for the local stack): an account listed in the hub's
// MemberAccounts but absent here has no such role.
type Member struct {
	Account string `json:"account"`
	RoleARN string `json:"roleArn"`
	// Trust is the role's AssumeRolePolicyDocument.
	Trust    json.RawMessage   `json:"trust"`
	Policies []json.RawMessage `json:"policies"` // [{name, policy}]
	// KMS maps a Region to the member account's KMS emulator.
	KMS map[string]string `json:"kms"`
}

// identity is who signs a request: a function's role session, or a member
// role's session the function assumed.
type identity struct {
	Session  string // the session ARN (the principal)
	RoleARN  string // aws:PrincipalArn
	Account  string
	Policies []json.RawMessage
	KMS      map[string]string // nil: the hub's (Config.KMS)
}

// identity is the member role session of an access key moto's STS issued
// through the gate, else the function's own.
func (g *Gate) identity(f Function, akid string) identity {
	g.mu.Lock()
	id, ok := g.assumed[akid]
	g.mu.Unlock()
	if ok {
		return id
	}
	return identity{Session: f.Session, RoleARN: f.RoleARN, Account: g.cfg.Account, Policies: f.Policies}
}

// member returns the member whose role is roleARN.
func (g *Gate) member(roleARN string) (Member, bool) {
	for _, m := range g.cfg.Members {
		if m.RoleARN == roleARN {
			return m, true
		}
	}
	return Member{}, false
}

var accessKeyID = regexp.MustCompile(`<AccessKeyId>([^<]+)</AccessKeyId>`)

// assumeRole decides an STS request (query protocol): only AssumeRole is
// known. A role that does not exist is denied as one whose trust refuses
// the caller: STS answers both with AccessDenied.
func (g *Gate) assumeRole(w http.ResponseWriter, r *http.Request, id identity, body []byte) {
	v, err := url.ParseQuery(string(body))
	if err == nil && v.Get("Action") == "GetCallerIdentity" {
		callerIdentity(w, id)
		return
	}
	if err != nil || v.Get("Action") != "AssumeRole" {
		g.fail(w, Function{Name: id.Session}, fmt.Errorf("STS request %q: the IAM gate knows only sts:AssumeRole and sts:GetCallerIdentity", v.Get("Action")))
		return
	}
	roleARN := v.Get("RoleArn")
	parts := strings.SplitN(roleARN, ":", 6)
	if len(parts) < 6 {
		stsDeny(w, id.Session, roleARN)
		return
	}
	req := Request{Principal: id.Session, Action: "sts:AssumeRole", Resource: roleARN, Account: parts[4], Policies: id.Policies,
		Context: map[string][]string{"aws:PrincipalArn": {id.RoleARN}, "aws:PrincipalAccount": {id.Account}}}
	for param, key := range map[string]string{"ExternalId": "sts:ExternalId", "RoleSessionName": "sts:RoleSessionName"} {
		if s := v.Get(param); s != "" {
			req.Context[key] = []string{s}
		}
	}
	m, ok := g.member(roleARN)
	decision := "NoSuchRole"
	if ok {
		req.ResourcePolicy = m.Trust
		d, err := g.decide(r.Context(), id, req)
		if err != nil {
			g.fail(w, Function{Name: id.Session}, err)
			return
		}
		decision = d.Decision
	}
	g.log.Info("decision", "principal", id.Session, "action", req.Action, "resource", roleARN, "decision", decision, "context", redactExternalID(req.Context))
	if decision != "Allowed" {
		stsDeny(w, id.Session, roleARN)
		return
	}
	g.forwardAssume(w, r, body, m, v.Get("RoleSessionName"))
}

// redactExternalID keeps the ExternalId out of the gate's log (it is not
// a secret in IAM's sense, but the hub passes it NoEcho).
func redactExternalID(c map[string][]string) map[string][]string {
	out := map[string][]string{}
	for k, v := range c {
		out[k] = v
	}
	if _, ok := out["sts:ExternalId"]; ok {
		out["sts:ExternalId"] = []string{"(set)"}
	}
	return out
}

// forwardAssume sends an allowed AssumeRole to moto's STS (which issues
// credentials it attributes to the role's account) and records the access
// key id it answers with.
func (g *Gate) forwardAssume(w http.ResponseWriter, r *http.Request, body []byte, m Member, session string) {
	out, err := http.NewRequestWithContext(r.Context(), http.MethodPost, g.cfg.STS+"/", bytes.NewReader(body))
	if err != nil {
		g.fail(w, Function{Name: m.RoleARN}, err)
		return
	}
	out.Header = r.Header.Clone()
	resp, err := g.client.Do(out)
	if err != nil {
		g.fail(w, Function{Name: m.RoleARN}, fmt.Errorf("moto's STS: %w", err))
		return
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	if k := accessKeyID.FindSubmatch(data); resp.StatusCode == http.StatusOK && k != nil {
		roleName := m.RoleARN[strings.LastIndex(m.RoleARN, "/")+1:]
		g.mu.Lock()
		g.assumed[string(k[1])] = identity{Session: fmt.Sprintf("arn:%s:sts::%s:assumed-role/%s/%s", g.cfg.Partition, m.Account, roleName, session),
			RoleARN: m.RoleARN, Account: m.Account, Policies: m.Policies, KMS: m.KMS}
		g.mu.Unlock()
	}
	for k, vs := range resp.Header {
		if k != "Content-Length" {
			w.Header()[k] = vs
		}
	}
	w.WriteHeader(resp.StatusCode)
	_, _ = w.Write(data)
}

// callerIdentity answers sts:GetCallerIdentity as STS does: for any
// caller, whatever its policies say (no permission is needed, and an
// explicit deny does not stop it: docs/aws-behaviour.md), with the
// caller's own session and account.
func callerIdentity(w http.ResponseWriter, id identity) {
	role := id.RoleARN[strings.LastIndex(id.RoleARN, "/")+1:]
	session := id.Session[strings.LastIndex(id.Session, "/")+1:]
	w.Header().Set("Content-Type", "text/xml")
	fmt.Fprintf(w, `<GetCallerIdentityResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/"><GetCallerIdentityResult><Arn>%s</Arn><UserId>%s</UserId><Account>%s</Account></GetCallerIdentityResult><ResponseMetadata><RequestId>local-iam-gate</RequestId></ResponseMetadata></GetCallerIdentityResponse>`,
		html.EscapeString(id.Session), html.EscapeString("AROA"+strings.ToUpper(role)+":"+session), html.EscapeString(id.Account))
}

// stsDeny answers as STS does when the caller may not assume the role, or
// the role does not exist (HTTP 403, AccessDenied, query protocol XML).
func stsDeny(w http.ResponseWriter, session, roleARN string) {
	msg := fmt.Sprintf("User: %s is not authorized to perform: sts:AssumeRole on resource: %s", session, roleARN)
	w.Header().Set("Content-Type", "text/xml")
	w.WriteHeader(http.StatusForbidden)
	fmt.Fprintf(w, `<ErrorResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/"><Error><Type>Sender</Type><Code>AccessDenied</Code><Message>%s</Message></Error><RequestId>local-iam-gate</RequestId></ErrorResponse>`, html.EscapeString(msg))
}
