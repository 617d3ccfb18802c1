package store

import (
	"cmp"
	"encoding/hex"
	"path/filepath"
	"slices"
	"time"
)

// CheckpointKind says how a checkpoint's weights are kept.
type CheckpointKind string

const (
	// CheckpointLoRA weights are LoRA tensors, small enough to live in the
	// database (bucket checkpoint_tensors).
	CheckpointLoRA CheckpointKind = "lora"

	// CheckpointFull weights are a full fine-tune, a file of gigabytes kept
	// on disk (by convention under CheckpointDir); the database keeps its
	// path and hash.
	CheckpointFull CheckpointKind = "full"
)

// Checkpoint is a saved state of a run's weights at a step.
type Checkpoint struct {
	ID    string         `json:"id"` // UUID
	RunID string         `json:"run_id"`
	Step  int            `json:"step"`
	Kind  CheckpointKind `json:"kind"`

	// Path is the file of a full checkpoint; empty for LoRA.
	Path string `json:"path,omitempty"`

	// Hash is the lower-case hex SHA-256 of the weights: of the tensor
	// bytes for LoRA (computed by the store), of the file for full
	// (computed by the caller). Size is their length in bytes.
	Hash string `json:"hash"`
	Size int64  `json:"size"`

	Created time.Time `json:"created"`
}

// CheckpointDir returns the directory beside the database file where the
// app keeps the files of full checkpoints. The store does not create it.
func (db *DB) CheckpointDir() string {
	return filepath.Join(filepath.Dir(db.path), "checkpoints")
}

// PutCheckpoint creates or replaces a checkpoint of an existing run (an
// error wrapping ErrNotFound otherwise). For CheckpointLoRA, tensors holds
// the LoRA weights (an encoded safetensors file, say) and must not be empty;
// the store sets c.Hash and c.Size from it. For CheckpointFull, tensors must
// be empty and c.Path and c.Hash are required. If c.ID is empty a new UUID
// is assigned; a zero c.Created becomes the current time. On success the
// stored record is written back into *c. The store reads tensors only
// during the call.
func (db *DB) PutCheckpoint(c *Checkpoint, tensors []byte) error {
	rec := *c
	switch rec.Kind {
	case CheckpointLoRA:
		if len(tensors) == 0 {
			return invalid("LoRA checkpoint without tensors")
		}
		if rec.Path != "" {
			return invalid("LoRA checkpoint with a path")
		}
		rec.Hash, rec.Size = hashOf(tensors), int64(len(tensors))
	case CheckpointFull:
		if len(tensors) != 0 {
			return invalid("full checkpoint with tensors in the database")
		}
		if rec.Path == "" || !isHash(rec.Hash) {
			return invalid("full checkpoint needs a path and a SHA-256 hash")
		}
	default:
		return invalid("checkpoint kind %q", rec.Kind)
	}
	if rec.Step < 0 {
		return invalid("checkpoint step %d is negative", rec.Step)
	}
	if rec.ID != "" {
		if err := checkID("checkpoint", rec.ID); err != nil {
			return err
		}
	} else {
		rec.ID = newID()
	}
	if rec.Created.IsZero() {
		rec.Created = now()
	}
	err := db.update(func(b *buckets) error {
		if _, err := getRun(b, rec.RunID); err != nil {
			return err
		}
		if rec.Kind == CheckpointLoRA {
			if err := b.tensors.Put([]byte(rec.ID), tensors); err != nil {
				return err
			}
		} else if err := b.tensors.Delete([]byte(rec.ID)); err != nil {
			return err
		}
		return putJSON(b.checkpoints, rec.ID, &rec)
	})
	if err == nil {
		*c = rec
	}
	return err
}

// isHash reports whether s looks like a hex SHA-256.
func isHash(s string) bool {
	_, err := hex.DecodeString(s)
	return len(s) == 64 && err == nil
}

// Checkpoint returns the checkpoint record with the given id, or an error
// wrapping ErrNotFound.
func (db *DB) Checkpoint(id string) (Checkpoint, error) {
	var c Checkpoint
	err := db.view(func(b *buckets) error {
		found, err := getJSON(b.checkpoints, "checkpoint", id, &c)
		if err == nil && !found {
			err = notFound("checkpoint", id)
		}
		return err
	})
	return c, err
}

// CheckpointTensors returns the LoRA tensors of a checkpoint. The slice is
// a copy owned by the caller. It returns an error wrapping ErrNotFound if
// there is no such checkpoint or it is a full one (whose weights are at
// Checkpoint.Path).
func (db *DB) CheckpointTensors(id string) ([]byte, error) {
	var out []byte
	err := db.view(func(b *buckets) error {
		if v := b.tensors.Get([]byte(id)); v != nil {
			out = clone(v)
			return nil
		}
		return notFound("checkpoint tensors", id)
	})
	return out, err
}

// Checkpoints returns the checkpoints of a run in step order (then by
// creation time and id); none is not an error.
func (db *DB) Checkpoints(runID string) ([]Checkpoint, error) {
	var out []Checkpoint
	err := db.view(func(b *buckets) error {
		var err error
		out, err = runCheckpoints(b, runID)
		return err
	})
	return out, err
}

// runCheckpoints lists a run's checkpoints, sorted, inside a transaction.
func runCheckpoints(b *buckets, runID string) ([]Checkpoint, error) {
	var out []Checkpoint
	err := eachJSON(b.checkpoints, "checkpoint", func(_ string, c *Checkpoint) error {
		if c.RunID == runID {
			out = append(out, *c)
		}
		return nil
	})
	slices.SortFunc(out, func(x, y Checkpoint) int {
		return cmp.Or(cmp.Compare(x.Step, y.Step), x.Created.Compare(y.Created), cmp.Compare(x.ID, y.ID))
	})
	return out, err
}

// LatestCheckpoint returns the run's checkpoint with the highest step (the
// newest among equals): where a resumed run continues. It returns an error
// wrapping ErrNotFound if the run has none.
func (db *DB) LatestCheckpoint(runID string) (Checkpoint, error) {
	cps, err := db.Checkpoints(runID)
	if err != nil {
		return Checkpoint{}, err
	}
	if len(cps) == 0 {
		return Checkpoint{}, notFound("checkpoint of run", runID)
	}
	return cps[len(cps)-1], nil
}

// DeleteCheckpoint removes a checkpoint record and its LoRA tensors. The
// file of a full checkpoint is not removed. It returns an error wrapping
// ErrNotFound if there is no such checkpoint.
func (db *DB) DeleteCheckpoint(id string) error {
	return db.update(func(b *buckets) error { return deleteCheckpoint(b, id) })
}

// deleteCheckpoint removes a checkpoint inside a transaction.
func deleteCheckpoint(b *buckets, id string) error {
	if b.checkpoints.Get([]byte(id)) == nil {
		return notFound("checkpoint", id)
	}
	if err := b.checkpoints.Delete([]byte(id)); err != nil {
		return err
	}
	return b.tensors.Delete([]byte(id))
}
