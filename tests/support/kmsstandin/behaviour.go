package kmsstandin

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Behaviours of real AWS KMS that the stand-in models by default, each
// with a knob (an Options field and an environment variable of the
// command) so that a test suite can make it short. See docs/kms-standin.md.
const (
	// DefaultRotationDelay: RotateKeyOnDemand only starts a rotation; it
	// completes this long after the call (KMS rotates in the background).
	DefaultRotationDelay = 1500 * time.Millisecond
	// DefaultStaleReadWindow: for this long after a change to a key,
	// DescribeKey, ListKeyRotations and GetKeyRotationStatus answer with
	// the key as it was before the change (KMS is eventually consistent).
	DefaultStaleReadWindow = 750 * time.Millisecond
	// DefaultReplicaSyncDelay: multi-Region shared properties (the key
	// material ids and their states, the end of a replica's Creating
	// state) reach a replica this long after they change on the primary.
	DefaultReplicaSyncDelay = time.Second
	// DefaultMaxOnDemandRotations: on-demand rotations allowed per KMS key
	// over its life (the RotateKeyOnDemand reference says 25).
	DefaultMaxOnDemandRotations = 25
)

// Off, as Options.RotationDelay, StaleReadWindow or ReplicaSyncDelay,
// turns that behaviour off: the change is complete and visible at once.
// (The zero value picks the default.)
const Off time.Duration = -1

// Environment variables the command
// (tests/support/kmsstandin/cmd/kms-standin) reads with EnvOptions.
// Durations are Go durations ("1.5s", "200ms"); "0" turns the behaviour
// off; unset or empty keeps the default.
const (
	EnvRotationDelay        = "KMS_STANDIN_ROTATION_DELAY"
	EnvStaleReadWindow      = "KMS_STANDIN_STALE_READ_WINDOW"
	EnvReplicaSyncDelay     = "KMS_STANDIN_REPLICA_SYNC_DELAY"
	EnvMaxOnDemandRotations = "KMS_STANDIN_MAX_ON_DEMAND_ROTATIONS" // n >= 1, or -1 for no limit
	EnvReplicaRegions       = "KMS_STANDIN_REPLICA_REGIONS"         // "eu-west-1=127.0.0.1:4600,eu-west-3=127.0.0.1:4601"
)

// EnvOptions returns o with the knobs set from the environment (getenv is
// os.Getenv in the command).
func EnvOptions(o Options, getenv func(string) string) (Options, error) {
	for _, d := range []struct {
		name string
		dst  *time.Duration
	}{{EnvRotationDelay, &o.RotationDelay}, {EnvStaleReadWindow, &o.StaleReadWindow}, {EnvReplicaSyncDelay, &o.ReplicaSyncDelay}} {
		v := strings.TrimSpace(getenv(d.name))
		if v == "" {
			continue
		}
		x, err := time.ParseDuration(v)
		if v == "0" {
			x, err = 0, nil
		}
		if err != nil || x < 0 {
			return o, fmt.Errorf("%s=%q: want a non-negative Go duration such as 1.5s or 200ms (0 turns it off)", d.name, v)
		}
		if x == 0 {
			x = Off
		}
		*d.dst = x
	}
	if v := strings.TrimSpace(getenv(EnvMaxOnDemandRotations)); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n == 0 || n < -1 {
			return o, fmt.Errorf("%s=%q: want a number of rotations >= 1, or -1 for no limit", EnvMaxOnDemandRotations, v)
		}
		o.MaxOnDemandRotations = n
	}
	return o, nil
}

// RegionAddr is one further Region the command serves, and where.
type RegionAddr struct{ Region, Addr string }

// ParseReplicaRegions reads "region=host:port,region=host:port".
func ParseReplicaRegions(s string) ([]RegionAddr, error) {
	var out []RegionAddr
	seen := map[string]bool{}
	for _, part := range strings.Split(s, ",") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		r, a, ok := strings.Cut(part, "=")
		if !ok || r == "" || a == "" || seen[r] {
			return nil, fmt.Errorf("replica Regions %q: want region=host:port, each Region once, separated by commas", s)
		}
		seen[r] = true
		out = append(out, RegionAddr{Region: r, Addr: a})
	}
	return out, nil
}

// knobs are the effective behaviour settings (Off resolved to 0).
type knobs struct {
	rotationDelay, staleWindow, syncDelay time.Duration
	maxRotations                          int // <= 0: no limit
}

func resolveKnobs(o Options) knobs {
	pick := func(d, def time.Duration) time.Duration {
		switch {
		case d < 0:
			return 0
		case d == 0:
			return def
		}
		return d
	}
	k := knobs{
		rotationDelay: pick(o.RotationDelay, DefaultRotationDelay),
		staleWindow:   pick(o.StaleReadWindow, DefaultStaleReadWindow),
		syncDelay:     pick(o.ReplicaSyncDelay, DefaultReplicaSyncDelay),
		maxRotations:  o.MaxOnDemandRotations,
	}
	if k.maxRotations == 0 {
		k.maxRotations = DefaultMaxOnDemandRotations
	}
	return k
}

func (k knobs) String() string {
	lim := fmt.Sprintf("at most %d on-demand rotations per key", k.maxRotations)
	if k.maxRotations < 0 {
		lim = "no limit on on-demand rotations"
	}
	return fmt.Sprintf("rotation delay %s, stale-read window %s, replica sync delay %s, %s", k.rotationDelay, k.staleWindow, k.syncDelay, lim)
}

// world is what the stand-ins of several Regions share: one lock, one
// clock, the knobs and the changes still to happen (a multi-Region key's
// primary and replicas live in the Servers of their Regions).
type world struct {
	mu      sync.Mutex
	now     func() time.Time
	offset  time.Duration
	account string
	opts    Options // for the Servers of further Regions
	knobs   knobs
	servers map[string]*Server // by Region
	wrap    *wrapPool

	events []*event
	evSeq  int
}

func (w *world) clock() time.Time { return w.now().Add(w.offset) }

// event is a change that happens by itself at due: a rotation completing,
// a shared property reaching a replica.
type event struct {
	due time.Time
	seq int
	run func(at time.Time)
}

// at runs fn at base+d: now if d <= 0, else when a later request finds
// the stand-in's clock past it (settle). Changes therefore happen in the
// order of their times, before the request that could observe them.
func (w *world) at(base time.Time, d time.Duration, fn func(at time.Time)) {
	if d <= 0 {
		fn(base)
		return
	}
	w.evSeq++
	w.events = append(w.events, &event{due: base.Add(d), seq: w.evSeq, run: fn})
}

// settle runs every event that is due, earliest first.
func (w *world) settle() {
	now := w.clock()
	for {
		i := -1
		for j, e := range w.events {
			if e.due.After(now) {
				continue
			}
			if i < 0 || e.due.Before(w.events[i].due) || e.due.Equal(w.events[i].due) && e.seq < w.events[i].seq {
				i = j
			}
		}
		if i < 0 {
			return
		}
		e := w.events[i]
		w.events = slices.Delete(w.events, i, i+1)
		e.run(e.due)
	}
}

// snapshot is a key as it was before a change at a given time (nil
// before: it did not exist yet).
type snapshot struct {
	at     time.Time
	before *key
}

// touch records k as it is, before a change at time at, for the stale
// reads of the next StaleReadWindow. Call it after validation, just
// before mutating k.
func (w *world) touch(k *key, at time.Time) {
	win := w.knobs.staleWindow
	if win <= 0 {
		return
	}
	keep := k.history[:0]
	for _, h := range k.history {
		if at.Sub(h.at) < win {
			keep = append(keep, h)
		}
	}
	k.history = append(keep, snapshot{at: at, before: k.clone()})
}

// created records that k did not exist before at.
func (w *world) created(k *key, at time.Time) {
	if w.knobs.staleWindow > 0 {
		k.history = []snapshot{{at: at}}
	}
}

// view is k as an eventually consistent read sees it now: as it was
// before the earliest change of the last StaleReadWindow, if any (nil:
// the key did not exist yet), else as it is.
func (w *world) view(k *key) *key {
	win := w.knobs.staleWindow
	if win <= 0 || k == nil {
		return k
	}
	now := w.clock()
	for _, h := range k.history {
		if now.Sub(h.at) < win {
			return h.before
		}
	}
	return k
}

// clone copies k deeply enough to keep it as a snapshot.
func (k *key) clone() *key {
	c := *k
	c.history = nil
	c.materials = make([]*keyMaterial, len(k.materials))
	for i, m := range k.materials {
		mc := *m
		c.materials[i] = &mc
	}
	if k.replicas != nil {
		c.replicas = make(map[string]string, len(k.replicas))
		for r, a := range k.replicas {
			c.replicas[r] = a
		}
	}
	if k.rotating != nil {
		r := *k.rotating
		c.rotating = &r
	}
	return &c
}
