package kmsstandin

import "time"

func (s *Server) listKeyRotations(body []byte, e *Request) (any, *apiError) {
	var in struct {
		KeyId              string
		IncludeKeyMaterial string
		pageIn
	}
	k, err := s.decodeKey(body, e, &in, s.resolveKeyOnly)
	if err != nil {
		return nil, err
	}
	if k.info().class != "symmetric" {
		return nil, errf(codeUnsupported, "%s is %s: only symmetric encryption keys have key material rotations.", k.arn, k.spec)
	}
	switch in.IncludeKeyMaterial {
	case "", "ROTATIONS_ONLY", "ALL_KEY_MATERIAL":
	default:
		return nil, errf(codeValidation, "1 validation error detected: Value '%s' at 'includeKeyMaterial' failed to satisfy constraint: Member must satisfy enum value set: [ALL_KEY_MATERIAL, ROTATIONS_ONLY]", in.IncludeKeyMaterial)
	}
	k, err = s.read(k)
	if err != nil {
		return nil, err
	}
	s.expire(k)
	// ROTATIONS_ONLY (the default): the materials completed rotations made
	// current. ALL_KEY_MATERIAL adds the first material and any imported
	// material pending rotation (the ListKeyRotations reference), so also
	// the target of a rotation still in progress, which is PENDING_ROTATION.
	var sel []*keyMaterial
	for _, m := range k.materials {
		if in.IncludeKeyMaterial == "ALL_KEY_MATERIAL" || m.rotatedAt != nil {
			sel = append(sel, m)
		}
	}
	start, end, next, perr := page(len(sel), in.pageIn, 100)
	if perr != nil {
		return nil, perr
	}
	list := []map[string]any{}
	for _, m := range sel[start:end] {
		ent := map[string]any{"KeyId": k.id, "KeyMaterialId": m.id, "KeyMaterialState": m.state}
		if m.rotatedAt != nil {
			ent["RotationDate"] = ts(*m.rotatedAt)
			ent["RotationType"] = "ON_DEMAND"
		}
		if k.origin == "EXTERNAL" {
			if m.imported {
				ent["ImportState"] = "IMPORTED"
				ent["ExpirationModel"] = m.expiration
				if m.validTo != nil {
					ent["ValidTo"] = ts(*m.validTo)
				}
			} else {
				ent["ImportState"] = "PENDING_IMPORT"
			}
			if m.description != "" {
				ent["KeyMaterialDescription"] = m.description
			}
		}
		list = append(list, ent)
	}
	out := map[string]any{"Rotations": list, "Truncated": next != ""}
	if next != "" {
		out["NextMarker"] = next
	}
	return out, nil
}

// rotateKeyOnDemand starts a rotation; it completes RotationDelay later
// (completeRotation). Errors, in the order checked: UnsupportedOperation
// (not symmetric, or a replica: rotate the primary), DisabledException /
// KMSInvalidStateException (key state), ConflictException (a rotation in
// progress), LimitExceededException (MaxOnDemandRotations already
// started), KMSInvalidStateException (EXTERNAL without imported material
// in PENDING_ROTATION, including material still
// PENDING_MULTI_REGION_IMPORT_AND_ROTATION).
func (s *Server) rotateKeyOnDemand(body []byte, e *Request) (any, *apiError) {
	k, err := s.keyOf(body, e)
	if err != nil {
		return nil, err
	}
	if k.info().class != "symmetric" {
		return nil, errf(codeUnsupported, "%s is %s: on-demand rotation is supported only on symmetric encryption keys.", k.arn, k.spec)
	}
	if k.primary != nil {
		return nil, errf(codeUnsupported, "%s is a multi-Region replica key: invoke on-demand rotation on its primary %s.", k.arn, k.primary.arn)
	}
	switch st := s.state(k); st {
	case "Enabled":
	case "Disabled":
		return nil, errf(codeDisabled, "%s is disabled.", k.arn)
	default:
		return nil, errf(codeInvalidState, "%s is %s and not available for this operation.", k.arn, st)
	}
	if k.rotating != nil {
		return nil, errf(codeConflict, "An on-demand rotation of %s is already in progress (started %s).", k.arn, k.rotating.started.UTC().Format(time.RFC3339))
	}
	if max := s.w.knobs.maxRotations; max > 0 && k.onDemandRotations >= max {
		return nil, errf(codeLimitExceeded, "%s has had %d on-demand rotations, the most a KMS key can have.", k.arn, k.onDemandRotations)
	}
	toID := ""
	if k.origin == "EXTERNAL" {
		var next *keyMaterial
		for _, m := range k.materials {
			if m.pending() {
				next = m
			}
		}
		switch {
		case next == nil || !next.imported:
			return nil, errf(codeInvalidState, "%s has no imported key material in state PENDING_ROTATION: import new key material (ImportType NEW_KEY_MATERIAL) first.", k.arn)
		case next.state == matPendingMulti:
			return nil, errf(codeInvalidState, "The key material %s of %s is %s: import it into every replica key (ImportType EXISTING_KEY_MATERIAL) before rotating.", next.id, k.arn, next.state)
		}
		toID = next.id
	}
	now := s.clock()
	s.w.touch(k, now)
	k.rotating = &rotation{started: now.UTC(), toID: toID}
	k.onDemandRotations++
	s.w.at(now, s.w.knobs.rotationDelay, func(at time.Time) { s.completeRotation(k, at) })
	return map[string]any{"KeyId": k.arn}, nil
}

// completeRotation makes the rotation's material current, at.
func (s *Server) completeRotation(k *key, at time.Time) {
	r := k.rotating
	if r == nil {
		return // its material was deleted meanwhile
	}
	var next *keyMaterial
	if k.origin == "EXTERNAL" {
		next = k.material(r.toID)
		if next == nil || !next.pending() {
			s.w.touch(k, at)
			k.rotating = nil
			return
		}
	} else {
		secret, err := generateMaterial(k.spec)
		if err != nil {
			return // crypto/rand failed; the rotation stays in progress
		}
		next = &keyMaterial{id: materialID(k.id, secret), secret: secret, imported: true}
	}
	s.w.touch(k, at)
	if k.origin != "EXTERNAL" {
		k.materials = append(k.materials, next)
	}
	for _, m := range k.materials {
		if m.state == matCurrent {
			m.state = matNonCurrent
		}
	}
	t := at.UTC()
	next.state, next.rotatedAt = matCurrent, &t
	k.rotating = nil
	s.w.syncReplicas(k, at)
}

// getKeyRotationStatus: automatic rotation is never enabled in the
// stand-in (EnableKeyRotation is not implemented); OnDemandRotationStartDate
// is there while an on-demand rotation is in progress (on a replica: its
// primary's).
func (s *Server) getKeyRotationStatus(body []byte, e *Request) (any, *apiError) {
	k, err := s.keyOf(body, e)
	if err != nil {
		return nil, err
	}
	if k.info().class != "symmetric" {
		return nil, errf(codeUnsupported, "%s is %s: key rotation is supported only on symmetric encryption keys.", k.arn, k.spec)
	}
	v, err := s.read(k)
	if err != nil {
		return nil, err
	}
	out := map[string]any{"KeyId": k.arn, "KeyRotationEnabled": false}
	r := v.rotating
	if v.primary != nil {
		if p := s.w.view(v.primary); p != nil {
			r = p.rotating
		}
	}
	if r != nil {
		out["OnDemandRotationStartDate"] = ts(r.started)
	}
	return out, nil
}
