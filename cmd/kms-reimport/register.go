package main

// register and deregister. register takes every field of the registry
// policy (flow.Policy) as a flag, checks it as an execution input is
// checked, then checks the key and the secret against what the
// deployment allows before it writes: checkRegistration decides from facts
// gathered first (gatherFacts), so a table test covers every refusal
// without AWS.

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/kms"
	"github.com/aws/aws-sdk-go-v2/service/secretsmanager"

	"github.com/kms-reimport/kms-reimport/shared/flow"
	"github.com/kms-reimport/kms-reimport/shared/keymaterial"
	"github.com/kms-reimport/kms-reimport/shared/kmsaccess"
	"github.com/kms-reimport/kms-reimport/shared/registry"
	"github.com/kms-reimport/kms-reimport/shared/stages/planner"
)

// policyFlags names the flag of each flow.Policy field
// (TestRegisterSetsEveryPolicyField: every field has one).
var policyFlags = map[string]string{
	"SecretVersionStage": "secret-stage",
	"ValidFor":           "valid-for",
	"ExpirationModel":    "no-expiry",
	"RenewBefore":        "renew-before",
	"WrappingAlgorithm":  "wrapping-algorithm",
	"WrappingKeySpec":    "wrapping-key-spec",
	"RotateEvery":        "rotate-every",
	"NewMaterialStage":   "new-material-stage",
	"GenerateMaterial":   "generate-material",
}

// policyValues are register's policy flags as parsed.
type policyValues struct {
	p        flow.Policy
	noExpiry bool
}

// bindPolicy defines a flag for every field of flow.Policy, the one set
// register and rotate share; renewBefore is its --renew-before default.
func bindPolicy(fs *flag.FlagSet, renewBefore string) *policyValues {
	v := &policyValues{}
	fs.StringVar(&v.p.SecretVersionStage, policyFlags["SecretVersionStage"], "", "staging label of the secret version to import (default AWSCURRENT)")
	fs.StringVar(&v.p.ValidFor, policyFlags["ValidFor"], "", "validity of each import, e.g. 2160h or 90d (at most 365d)")
	fs.BoolVar(&v.noExpiry, policyFlags["ExpirationModel"], false, "import with KEY_MATERIAL_DOES_NOT_EXPIRE instead of --valid-for")
	fs.StringVar(&v.p.RenewBefore, policyFlags["RenewBefore"], renewBefore, "renew this long before ValidTo (default: the deployment's RenewBefore)")
	fs.StringVar(&v.p.WrappingAlgorithm, policyFlags["WrappingAlgorithm"], "", "wrapping algorithm (default: the best for the key type)")
	fs.StringVar(&v.p.WrappingKeySpec, policyFlags["WrappingKeySpec"], "", "RSA_2048, RSA_3072 or RSA_4096 (default RSA_4096)")
	fs.StringVar(&v.p.RotateEvery, policyFlags["RotateEvery"], "", "rotate to new key material this often, e.g. 90d (at least 90d; needs --new-material-stage or --generate-material)")
	fs.StringVar(&v.p.NewMaterialStage, policyFlags["NewMaterialStage"], "", "staging label of the secret version holding a scheduled rotation's new material")
	fs.BoolVar(&v.p.GenerateMaterial, policyFlags["GenerateMaterial"], false, "generate a scheduled rotation's new material (stored first as a new secret version)")
	return v
}

// policy is the flags as a flow.Policy.
func (v *policyValues) policy() flow.Policy {
	p := v.p
	if v.noExpiry {
		p.ExpirationModel = flow.DoesNotExpire
	}
	return p
}

// deployment is what the deployment allows the functions to use, as
// register checks it (planner.Deployment: register, adopt and the fleet
// run's discovery check with one decision).
type deployment = planner.Deployment

// registerFacts is what register learns about the key and the secret
// before it decides.
type registerFacts = planner.RegisterFacts

// checkRegistration decides whether r may be registered for the key and
// secret of f, in deployment d (planner.CheckRegistration).
func checkRegistration(r *flow.Request, f registerFacts, d deployment) error {
	return planner.CheckRegistration(r, f, d)
}

// keyReader is the part of KMS register reads; secretReader the part of
// Secrets Manager (*kms.Client, *secretsmanager.Client; fakes in tests).
type keyReader interface {
	kmsaccess.Describer
	ListResourceTags(context.Context, *kms.ListResourceTagsInput, ...func(*kms.Options)) (*kms.ListResourceTagsOutput, error)
}

type secretReader = keymaterial.SecretReader

// gatherFacts reads the key, its tags and the secret. A key that doesn't
// exist, or a failure to reach AWS, is an error; what the secret holds is
// a fact. The material read is zeroed at once: only its length is kept.
func gatherFacts(ctx context.Context, k keyReader, s secretReader, r *flow.Request) (registerFacts, error) {
	md, err := kmsaccess.Describe(ctx, k, r.KeyID)
	if err != nil {
		return registerFacts{}, err
	}
	tags, err := readTags(ctx, k, *md.Arn)
	if err != nil {
		return registerFacts{Key: md}, err
	}
	return withMaterial(ctx, s, r, registerFacts{Key: md, Tags: tags})
}

// readTags reads every page of a key's tags (planner.ReadTags).
func readTags(ctx context.Context, k keyReader, arn string) (map[string]string, error) {
	return planner.ReadTags(ctx, k, arn)
}

// withMaterial completes f with what the secret of r holds
// (planner.WithMaterial).
func withMaterial(ctx context.Context, s secretReader, r *flow.Request, f registerFacts) (registerFacts, error) {
	return planner.WithMaterial(ctx, s, r, f)
}

// exitFor is register's exit code for err: bad input (the flags, the key,
// the secret, the wrapping) is exitUsage; anything else, such as failing
// to reach AWS, exitFailure.
func exitFor(err error) int {
	switch flow.NameOf(err) {
	case flow.InvalidInput, flow.KeyNotFound, flow.KeyNotEligible, flow.KeyNotReady, flow.SecretNotFound, flow.InvalidSecret, flow.UnsupportedWrapping, flow.RotationNotSupported:
		return exitUsage
	}
	return exitFailure
}

// deploymentFlags defines what register checks against the deployment.
func deploymentFlags(fs *flag.FlagSet) (tag, prefix *string) {
	tag = fs.String("managed-tag", "kms-reimport:managed=true", "tag KEY=VALUE the key must carry: the deployment's ManagedKeyTagKey=ManagedKeyTagValue (\"\" when ManagedKeyTagValue is empty)")
	prefix = fs.String("secret-prefix", "kms-reimport/", "name prefix the secret must have: the deployment's SecretNamePrefix (\"\" = any)")
	return tag, prefix
}

func parseDeployment(tag, prefix string) (deployment, error) {
	d := deployment{SecretPrefix: prefix}
	if tag == "" {
		return d, nil
	}
	k, v, ok := strings.Cut(tag, "=")
	if !ok || k == "" {
		return d, flow.Errorf(flow.InvalidInput, "flag --managed-tag is %q: want KEY=VALUE, such as kms-reimport:managed=true, or \"\" for none", tag)
	}
	d.TagKey, d.TagValue = k, v
	return d, nil
}

func runRegister(args []string, stdout, stderr io.Writer) int {
	fs := newFlags("register", "register --key KEY --secret SECRET --valid-for 2160h --renew-before 336h [flags]", stderr)
	table := tableFlag(fs)
	keyID := fs.String("key", "", "key ARN, key id or alias (resolved to the key ARN)")
	secret := fs.String("secret", "", "secret ARN or name holding the key material")
	pv := bindPolicy(fs, "336h")
	tag, prefix := deploymentFlags(fs)
	dryRun := fs.Bool("dry-run", false, "check the key, the secret and the policy; register nothing")
	if code, ok := parse(fs, args); !ok {
		return code
	}
	fail := func(err error, code int) int {
		fmt.Fprintln(stderr, "kms-reimport register:", err)
		return code
	}
	p := pv.policy()
	if !p.NoExpiry() && p.ValidFor == "" {
		return fail(errors.New("--valid-for (or --no-expiry) is required"), exitUsage)
	}
	// The same validation as an execution input: a clear error naming the flag's field.
	r, err := flow.ValidateRequest(flow.RequestInput{KeyID: *keyID, SecretID: *secret, Policy: p}, time.Now(), flow.RequestOptions{})
	if err != nil {
		return fail(err, exitUsage)
	}
	// What the registry can't keep is refused before any call to AWS.
	if err := r.ValidateKept(); err != nil {
		return fail(err, exitUsage)
	}
	d, err := parseDeployment(*tag, *prefix)
	if err != nil {
		return fail(err, exitUsage)
	}
	if !*dryRun && *table == "" {
		return fail(errors.New("no table: pass --table or set TABLE_NAME (the stack output TableName)"), exitUsage)
	}
	ctx := context.Background()
	cfg, err := awsConfig(ctx)
	if err != nil {
		return fail(err, exitFailure)
	}
	f, err := gatherFacts(ctx, kms.NewFromConfig(cfg), secretsmanager.NewFromConfig(cfg), r)
	if err != nil {
		return fail(err, exitFor(err))
	}
	if err := checkRegistration(r, f, d); err != nil {
		return fail(err, exitFor(err))
	}
	arn := *f.Key.Arn
	if *dryRun {
		fmt.Fprintf(stdout, "checks passed for %s (secret %s); nothing registered (--dry-run)\n", arn, r.SecretID)
		return exitOK
	}
	e := entryOf(r, f)
	store := &registry.Store{DB: dynamodb.NewFromConfig(cfg), Table: *table}
	if err := store.Put(ctx, e); err != nil {
		return fail(err, exitFailure)
	}
	fmt.Fprintf(stdout, "registered %s (secret %s, valid for %s, renew %s before, rotate every %s)\n", arn, r.SecretID, orDash(e.ValidFor, "no expiry"), e.RenewBefore, orDash(e.RotateEvery, "-"))
	return exitOK
}

// entryOf is the registry entry of a key that passed checkRegistration
// (planner.EntryOf).
func entryOf(r *flow.Request, f registerFacts) registry.Entry { return planner.EntryOf(r, f) }

// keyARN resolves an alias or key id to the key's ARN (a key ARN is taken
// as given: a key deleted from KMS may still be registered).
func keyARN(ctx context.Context, k kmsaccess.Describer, id string) (string, error) {
	if strings.HasPrefix(id, "arn:") && strings.Contains(id, ":key/") {
		return id, nil
	}
	md, err := kmsaccess.Describe(ctx, k, id)
	if err != nil {
		return "", err
	}
	return *md.Arn, nil
}

func runDeregister(args []string, stdout, stderr io.Writer) int {
	fs := newFlags("deregister", "deregister --key KEY", stderr)
	table := tableFlag(fs)
	keyID := fs.String("key", "", "key ARN, key id or alias (an alias or key id is resolved to the key ARN)")
	if code, ok := parse(fs, args); !ok {
		return code
	}
	if *keyID == "" {
		fmt.Fprintln(stderr, "kms-reimport deregister: --key is required")
		return exitUsage
	}
	ctx := context.Background()
	store, cfg, err := registryStore(ctx, *table)
	if err != nil {
		fmt.Fprintln(stderr, "kms-reimport deregister:", err)
		return exitUsage
	}
	arn, err := keyARN(ctx, kms.NewFromConfig(cfg), *keyID)
	if err != nil {
		fmt.Fprintln(stderr, "kms-reimport deregister:", err)
		if flow.NameOf(err) == flow.KeyNotFound {
			fmt.Fprintln(stderr, "kms-reimport deregister: to deregister a key KMS no longer has, give its key ARN as registered ('kms-reimport status' lists them)")
		}
		return exitFor(err)
	}
	if err := store.Delete(ctx, arn); err != nil {
		fmt.Fprintln(stderr, "kms-reimport deregister:", err)
		if errors.Is(err, registry.ErrNotFound) {
			return exitUsage
		}
		return exitFailure
	}
	fmt.Fprintf(stdout, "deregistered %s\n", arn)
	return exitOK
}
