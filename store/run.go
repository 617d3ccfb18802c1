package store

import (
	"bytes"
	"cmp"
	"encoding/binary"
	"encoding/json"
	"math"
	"slices"
	"time"

	bolt "go.etcd.io/bbolt"
)

// RunKind says what a run does.
type RunKind string

const (
	KindPersonalize RunKind = "personalize" // DreamBooth fine-tuning on a subject
	KindAlign       RunKind = "align"       // RL alignment of a personalized model
	KindGenerate    RunKind = "generate"    // sampling images into the gallery
	KindEvaluate    RunKind = "evaluate"    // scoring gallery images
	KindDemo        RunKind = "demo"        // the whole method on the built-in toy world
)

// Valid reports whether k is one of the kinds above.
func (k RunKind) Valid() bool {
	switch k {
	case KindPersonalize, KindAlign, KindGenerate, KindEvaluate, KindDemo:
		return true
	}
	return false
}

// RunStatus is where a run is in its life.
type RunStatus string

const (
	StatusQueued      RunStatus = "queued"      // created, not started
	StatusRunning     RunStatus = "running"     // being worked on by this process
	StatusInterrupted RunStatus = "interrupted" // the app stopped while it was running; resumable
	StatusFailed      RunStatus = "failed"      // stopped with an error (Run.Error)
	StatusDone        RunStatus = "done"        // finished
)

// Valid reports whether s is one of the statuses above.
func (s RunStatus) Valid() bool {
	switch s {
	case StatusQueued, StatusRunning, StatusInterrupted, StatusFailed, StatusDone:
		return true
	}
	return false
}

// Progress is how far a run has come.
type Progress struct {
	Step    int       `json:"step"`
	Total   int       `json:"total"`
	Started time.Time `json:"started,omitzero"` // first time the run was set running
	Updated time.Time `json:"updated,omitzero"` // last progress or status change
}

// Point is one value of a metric series.
type Point struct {
	Step  int
	Value float64
}

// Run is one job of the app: a personalization, an alignment, a batch of
// generations or an evaluation, with its configuration, status, progress and
// metric history.
//
// A Run value is a copy owned by the caller, Config and Metrics included.
type Run struct {
	ID          string  `json:"id"` // UUID
	Kind        RunKind `json:"kind"`
	SubjectID   string  `json:"subject_id,omitempty"`
	BaseModelID string  `json:"base_model_id,omitempty"`
	ParentID    string  `json:"parent_id,omitempty"` // the run this one continues or builds on

	// Config is the run's full configuration, a JSON object owned by the
	// training code; the store only checks that it is an object.
	Config json.RawMessage `json:"config"`

	Status   RunStatus `json:"status"`
	Error    string    `json:"error,omitempty"` // why it failed or was interrupted
	Progress Progress  `json:"progress"`
	Created  time.Time `json:"created"`

	// Metrics is the run's metric history: series name -> points in step
	// order. It is filled by Run, and by Runs when RunFilter.Metrics is set;
	// it is nil otherwise. PutRun ignores it: only AppendMetric(s) write
	// metrics.
	Metrics map[string][]Point `json:"-"`
}

// RunFilter selects runs. Zero fields match every run.
type RunFilter struct {
	Kind        RunKind
	Status      RunStatus
	SubjectID   string
	BaseModelID string
	ParentID    string

	// Metrics asks Runs to load every selected run's metric history.
	Metrics bool
}

func (f RunFilter) match(r *Run) bool {
	return (f.Kind == "" || f.Kind == r.Kind) &&
		(f.Status == "" || f.Status == r.Status) &&
		(f.SubjectID == "" || f.SubjectID == r.SubjectID) &&
		(f.BaseModelID == "" || f.BaseModelID == r.BaseModelID) &&
		(f.ParentID == "" || f.ParentID == r.ParentID)
}

// PutRun creates or replaces a run record. If r.ID is empty a new UUID is
// assigned. r.Kind is required; an empty r.Status means StatusQueued; an
// empty r.Config means {}; a zero r.Created becomes the current time for a
// new run and is kept for an existing one. The metric history is neither
// written nor cleared. On success the stored ID, Status, Config and Created
// are written back into *r.
func (db *DB) PutRun(r *Run) error {
	rec := *r
	rec.Metrics = nil
	if rec.Status == "" {
		rec.Status = StatusQueued
	}
	if len(bytes.TrimSpace(rec.Config)) == 0 {
		rec.Config = json.RawMessage("{}")
	}
	switch {
	case !rec.Kind.Valid():
		return invalid("run kind %q", rec.Kind)
	case !rec.Status.Valid():
		return invalid("run status %q", rec.Status)
	case !json.Valid(rec.Config) || bytes.TrimSpace(rec.Config)[0] != '{':
		return invalid("run config is not a JSON object")
	case rec.Progress.Step < 0 || rec.Progress.Total < 0:
		return invalid("run progress %d/%d", rec.Progress.Step, rec.Progress.Total)
	case rec.ID != "":
		if err := checkID("run", rec.ID); err != nil {
			return err
		}
	}
	err := db.update(func(b *buckets) error {
		if rec.ID == "" {
			rec.ID = newID()
		}
		if rec.Created.IsZero() {
			var old Run
			found, err := getJSON(b.runs, "run", rec.ID, &old)
			if err != nil {
				return err
			}
			rec.Created = old.Created
			if !found {
				rec.Created = now()
			}
		}
		return putJSON(b.runs, rec.ID, &rec)
	})
	if err == nil {
		rec.Metrics = r.Metrics
		*r = rec
	}
	return err
}

// Run returns the run with the given id, metric history included, or an
// error wrapping ErrNotFound.
func (db *DB) Run(id string) (Run, error) {
	var r Run
	err := db.view(func(b *buckets) error {
		var err error
		if r, err = getRun(b, id); err != nil {
			return err
		}
		r.Metrics, err = loadMetrics(b, id)
		return err
	})
	return r, err
}

// getRun reads a run record inside a transaction.
func getRun(b *buckets, id string) (Run, error) {
	var r Run
	found, err := getJSON(b.runs, "run", id, &r)
	if err == nil && !found {
		err = notFound("run", id)
	}
	return r, err
}

// Runs returns the runs that match f, oldest first (by Created, then id).
func (db *DB) Runs(f RunFilter) ([]Run, error) {
	var out []Run
	err := db.view(func(b *buckets) error {
		return eachJSON(b.runs, "run", func(id string, r *Run) error {
			if !f.match(r) {
				return nil
			}
			if f.Metrics {
				var err error
				if r.Metrics, err = loadMetrics(b, id); err != nil {
					return err
				}
			}
			out = append(out, *r)
			return nil
		})
	})
	if err != nil {
		return nil, err
	}
	slices.SortFunc(out, func(x, y Run) int {
		return cmp.Or(x.Created.Compare(y.Created), cmp.Compare(x.ID, y.ID))
	})
	return out, nil
}

// updateRun applies fn to a stored run in one transaction.
func (db *DB) updateRun(id string, fn func(r *Run)) error {
	return db.update(func(b *buckets) error {
		r, err := getRun(b, id)
		if err != nil {
			return err
		}
		fn(&r)
		return putJSON(b.runs, id, &r)
	})
}

// UpdateRunProgress records that the run has reached step of total and sets
// Progress.Updated to the current time (and Progress.Started, if unset).
func (db *DB) UpdateRunProgress(id string, step, total int) error {
	if step < 0 || total < 0 {
		return invalid("run progress %d/%d", step, total)
	}
	return db.updateRun(id, func(r *Run) {
		t := now()
		r.Progress.Step, r.Progress.Total, r.Progress.Updated = step, total, t
		if r.Progress.Started.IsZero() {
			r.Progress.Started = t
		}
	})
}

// SetRunStatus sets the run's status and error message (an empty msg
// clears it) and sets Progress.Updated to the current time. Setting
// StatusRunning also sets Progress.Started if it is unset. Any transition
// is allowed: resuming an interrupted run sets it running again.
func (db *DB) SetRunStatus(id string, status RunStatus, msg string) error {
	if !status.Valid() {
		return invalid("run status %q", status)
	}
	return db.updateRun(id, func(r *Run) {
		t := now()
		r.Status, r.Error, r.Progress.Updated = status, msg, t
		if status == StatusRunning && r.Progress.Started.IsZero() {
			r.Progress.Started = t
		}
	})
}

// interruptedMsg is the Error of a run that MarkInterrupted changed.
const interruptedMsg = "InstructBooth stopped while this run was running"

// MarkInterrupted sets every run whose status is StatusRunning to
// StatusInterrupted and returns their ids. Open calls it, because a run
// still marked running when the file is opened was left so by a crash;
// calling it while this process is running a run would mark that run too.
func (db *DB) MarkInterrupted() ([]string, error) {
	var ids []string
	err := db.view(func(b *buckets) error {
		return eachJSON(b.runs, "run", func(id string, r *Run) error {
			if r.Status == StatusRunning {
				ids = append(ids, id)
			}
			return nil
		})
	})
	if err != nil || len(ids) == 0 {
		return nil, err // no write transaction when there is nothing to do
	}
	err = db.update(func(b *buckets) error {
		for _, id := range ids {
			r, err := getRun(b, id)
			if err != nil {
				return err
			}
			r.Status, r.Error = StatusInterrupted, interruptedMsg
			if err := putJSON(b.runs, id, &r); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return ids, nil
}

// DeleteRun removes a run with its metric history, its checkpoints (records
// and LoRA tensors) and its gallery images (records and PNGs). Files of full
// checkpoints are not removed; list them with Checkpoints first. Ratings
// and child runs that name the run are kept. It returns an error wrapping
// ErrNotFound if there is no such run.
func (db *DB) DeleteRun(id string) error {
	return db.update(func(b *buckets) error {
		if _, err := getRun(b, id); err != nil {
			return err
		}
		if err := b.runs.Delete([]byte(id)); err != nil {
			return err
		}
		if b.metrics.Bucket([]byte(id)) != nil {
			if err := b.metrics.DeleteBucket([]byte(id)); err != nil {
				return err
			}
		}
		cps, err := runCheckpoints(b, id)
		if err != nil {
			return err
		}
		for _, c := range cps {
			if err := deleteCheckpoint(b, c.ID); err != nil {
				return err
			}
		}
		var gallery []string
		if err := eachJSON(b.gallery, "gallery image", func(gid string, g *GalleryImage) error {
			if g.RunID == id {
				gallery = append(gallery, gid)
			}
			return nil
		}); err != nil {
			return err
		}
		for _, gid := range gallery {
			if err := deleteGalleryImage(b, gid); err != nil {
				return err
			}
		}
		return nil
	})
}

// AppendMetric adds one point to the run's series name. Points are kept in
// step order; appending a step the series already has replaces its value
// (a resumed run logs again the steps after its checkpoint). Any float64,
// NaN and infinities included, is stored exactly.
func (db *DB) AppendMetric(runID, name string, step int, value float64) error {
	return db.AppendMetrics(runID, step, map[string]float64{name: value})
}

// AppendMetrics adds one point at step to each named series in a single
// transaction, as AppendMetric does for one.
func (db *DB) AppendMetrics(runID string, step int, values map[string]float64) error {
	if step < 0 {
		return invalid("metric step %d is negative", step)
	}
	for name := range values {
		if name == "" {
			return invalid("metric has no name")
		}
	}
	return db.update(func(b *buckets) error {
		if _, err := getRun(b, runID); err != nil {
			return err
		}
		run, err := b.metrics.CreateBucketIfNotExists([]byte(runID))
		if err != nil {
			return err
		}
		for name, v := range values {
			series, err := run.CreateBucketIfNotExists([]byte(name))
			if err != nil {
				return err
			}
			if err := series.Put(stepKey(step), floatValue(v)); err != nil {
				return err
			}
		}
		return nil
	})
}

// Metric returns the run's series name in step order; nil if the run has
// no such series. It returns an error wrapping ErrNotFound if there is no
// such run.
func (db *DB) Metric(runID, name string) ([]Point, error) {
	var out []Point
	err := db.view(func(b *buckets) error {
		if _, err := getRun(b, runID); err != nil {
			return err
		}
		if run := b.metrics.Bucket([]byte(runID)); run != nil {
			if series := run.Bucket([]byte(name)); series != nil {
				var err error
				out, err = readSeries(series, runID, name)
				return err
			}
		}
		return nil
	})
	return out, err
}

// loadMetrics reads every series of a run; nil if it has none.
func loadMetrics(b *buckets, runID string) (map[string][]Point, error) {
	run := b.metrics.Bucket([]byte(runID))
	if run == nil {
		return nil, nil
	}
	out := map[string][]Point{}
	err := run.ForEachBucket(func(name []byte) error {
		pts, err := readSeries(run.Bucket(name), runID, string(name))
		out[string(name)] = pts
		return err
	})
	return out, err
}

// readSeries decodes one series bucket.
func readSeries(series *bolt.Bucket, runID, name string) ([]Point, error) {
	var pts []Point
	err := series.ForEach(func(k, v []byte) error {
		if len(k) != 8 || len(v) != 8 {
			return corrupt("metric %s/%s: key or value is not 8 bytes", runID, name)
		}
		pts = append(pts, Point{
			Step:  int(binary.BigEndian.Uint64(k)),
			Value: math.Float64frombits(binary.BigEndian.Uint64(v)),
		})
		return nil
	})
	// Keys are big-endian, so bbolt's byte order is step order already.
	return pts, err
}

// stepKey encodes a step as a metric key: 8 bytes, big-endian, so that
// byte order is numeric order.
func stepKey(step int) []byte {
	return binary.BigEndian.AppendUint64(nil, uint64(step))
}

// floatValue encodes a metric value: the 8 bytes of its IEEE 754 bits,
// big-endian.
func floatValue(v float64) []byte {
	return binary.BigEndian.AppendUint64(nil, math.Float64bits(v))
}
