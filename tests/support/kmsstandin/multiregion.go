package kmsstandin

import (
	"encoding/json"
	"net/http"
	"slices"
	"time"
)

// replicateKey creates a replica of a multi-Region primary in another
// Region. If a Server of this stand-in serves that Region (InRegion, or
// the command's KMS_STANDIN_REPLICA_REGIONS), the replica is a key there:
// Creating until ReplicaSyncDelay has passed, then PendingImport (EXTERNAL)
// or Enabled, knowing the primary's key material ids as they were at the
// ReplicateKey call. Otherwise only its ARN is recorded (it lives in
// another KMS). Either way the answer is ReplicaKeyMetadata in state
// Creating, as the reference describes.
func (s *Server) replicateKey(body []byte, e *Request) (any, *apiError) {
	var in struct {
		KeyId, ReplicaRegion, Description string
		Tags                              []Tag
	}
	k, err := s.decodeKey(body, e, &in, s.resolveKeyOnly)
	if err != nil {
		return nil, err
	}
	switch {
	case !k.multiRegion:
		return nil, errf(codeUnsupported, "%s is not a multi-Region key.", k.arn)
	case k.primary != nil:
		return nil, errf(codeUnsupported, "%s is a replica key: replicate its primary %s.", k.arn, k.primary.arn)
	case in.ReplicaRegion == "" || len(in.ReplicaRegion) > 32:
		return nil, errf(codeValidation, "1 validation error detected: Value at 'replicaRegion' failed to satisfy constraint: Member must have length between 1 and 32")
	case in.ReplicaRegion == s.region:
		return nil, errf(codeValidation, "The replica Region %s is the Region of the primary key.", in.ReplicaRegion)
	case k.replicas[in.ReplicaRegion] != "":
		return nil, errf(codeAlreadyExists, "%s already has a replica in %s.", k.arn, in.ReplicaRegion)
	case k.deletion != nil:
		return nil, errf(codeInvalidState, "%s is pending deletion.", k.arn)
	}
	now := s.clock()
	s.w.touch(k, now)
	if k.replicas == nil {
		k.replicas = map[string]string{}
	}
	arn := "arn:aws:kms:" + in.ReplicaRegion + ":" + s.account + ":key/" + k.id
	k.replicas[in.ReplicaRegion] = arn
	desc := in.Description
	if desc == "" {
		desc = k.description
	}
	var md map[string]any
	if rs := s.w.servers[in.ReplicaRegion]; rs != nil {
		r := &key{
			id: k.id, arn: arn, created: now.UTC(), description: desc, spec: k.spec, usage: k.usage, origin: k.origin,
			enabled: true, multiRegion: true, region: rs.region, primary: k, creating: true, tags: in.Tags,
		}
		if old := rs.keys[k.id]; old == nil {
			rs.order = append(rs.order, k.id)
		}
		rs.keys[k.id] = r
		s.w.created(r, now)
		shared := sharedMaterials(k)
		s.w.at(now, s.w.knobs.syncDelay, func(at time.Time) { rs.adopt(r, shared, at) })
		md = rs.metadata(r)
	} else {
		md = s.metadata(k)
		md["Arn"], md["Description"] = arn, desc
		if k.origin == "EXTERNAL" {
			delete(md, "CurrentKeyMaterialId") // created with no key material
		}
		md["MultiRegionConfiguration"] = map[string]any{
			"MultiRegionKeyType": "REPLICA",
			"PrimaryKey":         map[string]string{"Arn": k.arn, "Region": s.region},
			"ReplicaKeys":        replicaKeys(k),
		}
	}
	md["KeyState"], md["Enabled"] = "Creating", false
	delete(md, "ValidTo")
	delete(md, "ExpirationModel")
	// Material pending rotation now waits for this replica too.
	s.w.recheck(k, now)
	return map[string]any{"ReplicaKeyMetadata": md, "ReplicaPolicy": "", "ReplicaTags": []any{}}, nil
}

// sharedMaterial is what a replica learns of one of its primary's key
// materials: its id and rotation state (for AWS_KMS keys, KMS shares the
// material itself too).
type sharedMaterial struct {
	id, state string
	rotatedAt *time.Time
	secret    []byte      // AWS_KMS origin only
	priv      *privateKey // AWS_KMS origin only
}

func sharedMaterials(p *key) []sharedMaterial {
	out := make([]sharedMaterial, 0, len(p.materials))
	for _, m := range p.materials {
		sm := sharedMaterial{id: m.id, state: m.state, rotatedAt: m.rotatedAt}
		if p.origin != "EXTERNAL" {
			sm.secret, sm.priv = m.secret, m.priv
		}
		out = append(out, sm)
	}
	return out
}

// syncReplicas sends the primary's key material ids and states, as they
// are at at, to each of its replicas this stand-in holds, arriving
// ReplicaSyncDelay later.
func (w *world) syncReplicas(p *key, at time.Time) {
	if p.primary != nil || len(p.replicas) == 0 {
		return
	}
	shared := sharedMaterials(p)
	for _, region := range sortedRegions(p) {
		rs, r := w.replica(p, region)
		if r == nil {
			continue
		}
		w.at(at, w.knobs.syncDelay, func(at time.Time) { rs.adopt(r, shared, at) })
	}
}

// replica returns the Server and replica key of p in region, if this
// stand-in holds it.
func (w *world) replica(p *key, region string) (*Server, *key) {
	rs := w.servers[region]
	if rs == nil {
		return nil, nil
	}
	r := rs.keys[p.id]
	if r == nil || r.primary != p {
		return nil, nil
	}
	return rs, r
}

func sortedRegions(p *key) []string {
	out := make([]string, 0, len(p.replicas))
	for r := range p.replicas {
		out = append(out, r)
	}
	slices.Sort(out)
	return out
}

// adopt applies what the primary shared: the replica knows exactly those
// material ids, in those states; its own imports of them (ValidTo,
// expiration model) are kept. A replica stops being Creating.
func (s *Server) adopt(r *key, shared []sharedMaterial, at time.Time) {
	s.w.touch(r, at)
	r.creating = false
	out := make([]*keyMaterial, 0, len(shared))
	for _, sm := range shared {
		m := r.material(sm.id)
		if m == nil {
			m = &keyMaterial{id: sm.id}
		}
		m.state, m.rotatedAt = sm.state, sm.rotatedAt
		if sm.secret != nil {
			m.secret, m.priv, m.imported = sm.secret, sm.priv, true
		}
		out = append(out, m)
	}
	r.materials = out
}

// recheck sets each of the primary's pending materials to PENDING_ROTATION
// if every replica has imported it, else to
// PENDING_MULTI_REGION_IMPORT_AND_ROTATION, and shares any change.
func (w *world) recheck(p *key, at time.Time) {
	if p.primary != nil || p.origin != "EXTERNAL" {
		return
	}
	changed := false
	for _, m := range p.materials {
		if !m.pending() {
			continue
		}
		want := matPendingRotation
		for _, region := range sortedRegions(p) {
			imported := p.externalImports[region][m.id]
			if _, r := w.replica(p, region); r != nil {
				rm := r.material(m.id)
				imported = rm != nil && rm.imported
			}
			if !imported {
				want = matPendingMulti
			}
		}
		if m.state != want {
			if !changed {
				w.touch(p, at)
				changed = true
			}
			m.state = want
		}
	}
	if changed {
		w.syncReplicas(p, at)
	}
}

// replicaImported serves POST /_standin/replica-imports?keyId=<primary id
// or ARN>&region=<Region>&keyMaterialId=<id>: a test reports that it
// imported that material into the primary's replica in a Region this
// stand-in does not serve (a local-kms, say), which the stand-in cannot
// see. Without it, material imported as NEW_KEY_MATERIAL into such a
// primary stays PENDING_MULTI_REGION_IMPORT_AND_ROTATION.
func (s *Server) replicaImported(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	s.w.mu.Lock()
	defer s.w.mu.Unlock()
	s.w.settle()
	k, aerr := s.resolveKeyOnly(q.Get("keyId"))
	region, id := q.Get("region"), q.Get("keyMaterialId")
	switch {
	case aerr != nil:
		http.Error(w, `{"error":"keyId: no such key"}`, http.StatusNotFound)
		return
	case k.replicas[region] == "" || id == "":
		http.Error(w, `{"error":"want ?keyId=<primary>&region=<a replica Region of it>&keyMaterialId=<id>"}`, http.StatusBadRequest)
		return
	}
	if _, rk := s.w.replica(k, region); rk != nil {
		http.Error(w, `{"error":"that replica is held by this stand-in: import into it instead"}`, http.StatusConflict)
		return
	}
	if k.externalImports == nil {
		k.externalImports = map[string]map[string]bool{}
	}
	if k.externalImports[region] == nil {
		k.externalImports[region] = map[string]bool{}
	}
	k.externalImports[region][id] = true
	s.w.recheck(k, s.clock())
	_ = json.NewEncoder(w).Encode(map[string]any{"ok": true})
}
