package store

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"

	bolt "go.etcd.io/bbolt"
)

// maxProblems bounds the problems one Check reports.
const maxProblems = 100

// Check verifies the whole database and returns nil if it is consistent, or
// an error wrapping ErrCorrupt that lists the problems found (at most 100).
//
// It runs bbolt's own page-level check (tx.Check) and then the store's
// invariants: the schema version is current and every bucket exists; every
// record decodes, is stored under its own id and has a valid kind, status
// or choice; every image a subject lists exists with the listed size and
// hash, and every stored image belongs to a subject that lists it; every
// metric series belongs to an existing run; every checkpoint belongs to an
// existing run, a LoRA checkpoint has its tensors (size and hash match) and
// a full one has none; every gallery image's run exists and its PNG matches
// its size and hash, and every PNG has a record.
//
// Check reads every blob, so it takes time proportional to the size of the
// file. It holds the write lock while it runs (nothing is written), so it
// is safe to call at any time; writers wait for it.
func (db *DB) Check() error {
	tx, err := db.bolt.Begin(true)
	if err != nil {
		return db.closedErr(err)
	}
	defer func() { _ = tx.Rollback() }()

	c := &checker{}
	for err := range tx.Check() {
		c.addf("bbolt: %v", err)
	}
	if err := c.checkSchema(tx); err != nil {
		c.add(err)
	} else if b, err := openBuckets(tx); err != nil {
		c.add(err)
	} else {
		c.checkSubjects(b)
		c.checkSimple(b)
		runs := c.checkRuns(b)
		c.checkMetrics(b, runs)
		c.checkCheckpoints(b, runs)
		c.checkGallery(b, runs)
	}
	if len(c.problems) == 0 {
		return nil
	}
	return fmt.Errorf("store: %s: %w: %w", db.path, ErrCorrupt, errors.Join(c.problems...))
}

// checker collects the problems of one Check.
type checker struct {
	problems []error
	dropped  int
}

func (c *checker) add(err error) {
	if len(c.problems) < maxProblems {
		c.problems = append(c.problems, err)
		return
	}
	c.dropped++
	if c.dropped == 1 {
		c.problems[maxProblems-1] = errors.New("... more problems not listed")
	}
}

func (c *checker) addf(format string, args ...any) { c.add(fmt.Errorf(format, args...)) }

func (c *checker) checkSchema(tx *bolt.Tx) error {
	v, fresh, err := readSchema(tx)
	switch {
	case err != nil:
		return err
	case fresh:
		return errors.New("the file has no buckets")
	case v != SchemaVersion:
		return fmt.Errorf("schema version %d, want %d", v, SchemaVersion)
	}
	return nil
}

// records decodes every value of a bucket, reporting values that do not
// decode, nested buckets, and records whose id differs from their key.
func records[T any](c *checker, bk *bolt.Bucket, kind string, id func(*T) string, fn func(key string, v *T)) {
	_ = bk.ForEach(func(k, data []byte) error {
		v := new(T)
		switch {
		case data == nil:
			c.addf("%s bucket holds a nested bucket %q", kind, k)
		case json.Unmarshal(data, v) != nil:
			c.addf("%s %q does not decode", kind, k)
		case id(v) != string(k):
			c.addf("%s stored under %q has id %q", kind, k, id(v))
		default:
			fn(string(k), v)
		}
		return nil
	})
}

// checkBlob reports a blob that is missing or does not match size and hash.
func (c *checker) checkBlob(what string, blob []byte, size int64, hash string) {
	switch {
	case blob == nil:
		c.addf("%s: bytes missing", what)
	case int64(len(blob)) != size:
		c.addf("%s: %d bytes, record says %d", what, len(blob), size)
	case hashOf(blob) != hash:
		c.addf("%s: content hash does not match the record", what)
	}
}

func (c *checker) checkSubjects(b *buckets) {
	listed := map[string]map[string]bool{} // subject -> hashes it lists
	records(c, b.subjects, "subject", func(s *Subject) string { return s.ID }, func(id string, s *Subject) {
		hashes := map[string]bool{}
		listed[id] = hashes
		blobs := b.subjectImages.Bucket([]byte(id))
		if blobs == nil {
			c.addf("subject %q has no image bucket", id)
		}
		for _, ref := range s.Images {
			what := fmt.Sprintf("subject %q image %q", id, ref.Name)
			if hashes[ref.Hash] {
				c.addf("%s: listed twice", what)
			}
			hashes[ref.Hash] = true
			if blobs != nil {
				c.checkBlob(what, blobs.Get([]byte(ref.Hash)), int64(ref.Size), ref.Hash)
			}
		}
	})
	_ = b.subjectImages.ForEach(func(k, v []byte) error {
		hashes, ok := listed[string(k)]
		if v != nil || !ok {
			c.addf("subject_images holds %q, which is not a subject's image bucket", k)
			return nil
		}
		return b.subjectImages.Bucket(k).ForEach(func(h, _ []byte) error {
			if !hashes[string(h)] {
				c.addf("subject %q: stored image %q is not listed", k, h)
			}
			return nil
		})
	})
}

// checkSimple checks the records that reference nothing: base models and
// ratings.
func (c *checker) checkSimple(b *buckets) {
	records(c, b.models, "base model", func(m *BaseModel) string { return m.ID }, func(id string, m *BaseModel) {
		if m.Name == "" || m.Path == "" {
			c.addf("base model %q has no name or path", id)
		}
	})
	records(c, b.ratings, "rating", func(r *Rating) string { return r.ID }, func(id string, r *Rating) {
		if !r.Choice.Valid() {
			c.addf("rating %q has choice %q", id, r.Choice)
		}
	})
}

// checkRuns checks the run records and returns the set of run ids.
func (c *checker) checkRuns(b *buckets) map[string]bool {
	runs := map[string]bool{}
	records(c, b.runs, "run", func(r *Run) string { return r.ID }, func(id string, r *Run) {
		runs[id] = true
		if !r.Kind.Valid() || !r.Status.Valid() {
			c.addf("run %q has kind %q, status %q", id, r.Kind, r.Status)
		}
		if !json.Valid(r.Config) || !bytes.HasPrefix(bytes.TrimSpace(r.Config), []byte("{")) {
			c.addf("run %q: config is not a JSON object", id)
		}
	})
	return runs
}

func (c *checker) checkMetrics(b *buckets, runs map[string]bool) {
	_ = b.metrics.ForEach(func(run, v []byte) error {
		if v != nil || !runs[string(run)] {
			c.addf("metrics hold %q, which is not an existing run", run)
			return nil
		}
		return b.metrics.Bucket(run).ForEach(func(name, v []byte) error {
			if v != nil {
				c.addf("metrics of run %q hold a value at %q", run, name)
				return nil
			}
			return b.metrics.Bucket(run).Bucket(name).ForEach(func(k, v []byte) error {
				if len(k) != 8 || len(v) != 8 {
					c.addf("metric %s/%s: key or value is not 8 bytes", run, name)
				}
				return nil
			})
		})
	})
}

func (c *checker) checkCheckpoints(b *buckets, runs map[string]bool) {
	lora := map[string]bool{}
	records(c, b.checkpoints, "checkpoint", func(cp *Checkpoint) string { return cp.ID }, func(id string, cp *Checkpoint) {
		if !runs[cp.RunID] {
			c.addf("checkpoint %q belongs to missing run %q", id, cp.RunID)
		}
		switch cp.Kind {
		case CheckpointLoRA:
			lora[id] = true
			c.checkBlob(fmt.Sprintf("checkpoint %q", id), b.tensors.Get([]byte(id)), cp.Size, cp.Hash)
		case CheckpointFull:
			if cp.Path == "" || !isHash(cp.Hash) {
				c.addf("full checkpoint %q has no path or hash", id)
			}
		default:
			c.addf("checkpoint %q has kind %q", id, cp.Kind)
		}
	})
	_ = b.tensors.ForEach(func(k, _ []byte) error {
		if !lora[string(k)] {
			c.addf("checkpoint tensors %q belong to no LoRA checkpoint", k)
		}
		return nil
	})
}

func (c *checker) checkGallery(b *buckets, runs map[string]bool) {
	ids := map[string]bool{}
	records(c, b.gallery, "gallery image", func(g *GalleryImage) string { return g.ID }, func(id string, g *GalleryImage) {
		ids[id] = true
		if g.RunID != "" && !runs[g.RunID] {
			c.addf("gallery image %q belongs to missing run %q", id, g.RunID)
		}
		c.checkBlob(fmt.Sprintf("gallery image %q", id), b.galleryPNG.Get([]byte(id)), int64(g.Size), g.Hash)
	})
	_ = b.galleryPNG.ForEach(func(k, _ []byte) error {
		if !ids[string(k)] {
			c.addf("gallery PNG %q has no record", k)
		}
		return nil
	})
}
