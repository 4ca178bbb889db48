// Clients gives a KMS client per AWS Region, for multi-Region
// keys whose replicas live in other Regions. Clients are built once per
// process: at init for the Regions of KMS_ENDPOINTS_BY_REGION, on first
// use (then cached) for any other Region.
//
// KMS_ENDPOINTS_BY_REGION is an optional operator setting, a JSON object
// {"eu-west-1": "https://vpce-…", …}: the KMS endpoint of each Region
// named (VPC interface endpoints, FIPS endpoints, local stacks). It is set
// through the SDK's BaseEndpoint option; Regions it doesn't name use the
// SDK's standard endpoint resolution (including AWS_ENDPOINT_URL_KMS).

package kmsaccess

import (
	"encoding/json"
	"fmt"
	"net"
	"net/url"
	"os"
	"strings"
	"sync"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/kms"
	"github.com/aws/aws-sdk-go-v2/service/secretsmanager"
)

// EnvVar is the environment variable read by FromEnv.
const EnvVar = "KMS_ENDPOINTS_BY_REGION"

// Clients hands out one KMS client per account and Region (accounts.go:
// the hub's own, and member accounts through the member role), and one
// Secrets Manager client per account and Region.
type Clients struct {
	cfg       aws.Config
	endpoints map[string]string
	members   Members
	assume    AssumeFunc
	mu        sync.Mutex
	byRegion  map[string]*kms.Client
	memberCfg map[string]aws.Config
	secrets   map[string]*secretsmanager.Client
}

// New builds the clients of cfg's Region and of every Region in endpoints,
// for the own account only.
func New(cfg aws.Config, endpoints map[string]string) (*Clients, error) {
	return NewAccounts(cfg, endpoints, Members{}, StsAssume)
}

// NewAccounts is New serving member accounts too: their clients are built
// on first use (then cached) with credentials from assume.
func NewAccounts(cfg aws.Config, endpoints map[string]string, members Members, assume AssumeFunc) (*Clients, error) {
	for r, u := range endpoints {
		p, err := url.Parse(u)
		if err != nil || p.Host == "" || (p.Scheme != "https" && !(p.Scheme == "http" && loopback(p.Hostname()))) {
			return nil, fmt.Errorf("%s: endpoint of %s is %q; want an https URL (plain http only on a loopback address, for a local stack)", EnvVar, r, u)
		}
	}
	c := &Clients{cfg: cfg, endpoints: endpoints, members: members, assume: assume,
		byRegion: map[string]*kms.Client{}, memberCfg: map[string]aws.Config{}, secrets: map[string]*secretsmanager.Client{}}
	c.For(cfg.Region)
	for r := range endpoints {
		c.For(r)
	}
	return c, nil
}

// FromEnv reads KMS_ENDPOINTS_BY_REGION (optional) and the member
// accounts (MembersFromEnv) and builds the clients.
func FromEnv(cfg aws.Config) (*Clients, error) {
	members, err := MembersFromEnv()
	if err != nil {
		return nil, err
	}
	m, err := EndpointsFromEnv()
	if err != nil {
		return nil, err
	}
	return NewAccounts(cfg, m, members, StsAssume)
}

// EndpointsFromEnv reads KMS_ENDPOINTS_BY_REGION (optional; empty when
// unset): the operator command builds its own Members, with these.
func EndpointsFromEnv() (map[string]string, error) {
	m := map[string]string{}
	if v := strings.TrimSpace(os.Getenv(EnvVar)); v != "" {
		if err := json.Unmarshal([]byte(v), &m); err != nil {
			return nil, fmt.Errorf("environment variable %s is not a JSON object of Region to endpoint URL: %v", EnvVar, err)
		}
	}
	return m, nil
}

// For returns the own account's client of region ("" = the function's own
// Region).
func (c *Clients) For(region string) *kms.Client {
	return c.forAccount("", "", region)
}

// forAccount returns the client of account (a member, or anything else
// for the own account) in region, built once.
func (c *Clients) forAccount(partition, account, region string) *kms.Client {
	if region == "" {
		region = c.cfg.Region
	}
	if !c.members.Member(account) {
		account = ""
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	key := region
	if account != "" {
		key = account + "/" + region
	}
	if k, ok := c.byRegion[key]; ok {
		return k
	}
	ep := c.endpoints[region]
	k := kms.NewFromConfig(c.configOf(partition, account), func(o *kms.Options) {
		o.Region = region
		if ep != "" {
			o.BaseEndpoint = aws.String(ep)
		}
	})
	c.byRegion[key] = k
	return k
}

// In returns the client of region as the Regional interface.
func (c *Clients) In(region string) API { return c.For(region) }

// RegionOf returns the Region of a KMS key ARN, or "".
func RegionOf(arn string) string {
	parts := strings.SplitN(arn, ":", 6)
	if len(parts) < 6 || parts[0] != "arn" || parts[2] != "kms" {
		return ""
	}
	return parts[3]
}

// loopback says whether host is this machine: the only place a KMS
// endpoint may be reached without TLS (a local emulator).
func loopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}
